"""Scenario 9, `--only fleet`: what one command costs each part of a fleet, how 1, 2 and 4 worker
processes scale beside the floor with as many processes, and the drain through PgBouncer beside the
direct one (docs/scaling.md is written from these figures).

Per command, over each drain's timed window (the clock's start to the last task's commit):

* Redis commands: `INFO stats` `total_commands_processed` of the whole Redis server, so run it
  against a Redis of its own (TASKLINE_BENCH_REDIS_URL) for a clean figure;
* PostgreSQL commits: `pg_stat_database.xact_commit` of the run's database (the drain's own
  count, less its polling);
* WAL bytes: `pg_current_wal_lsn()` before and after, which is the whole cluster's: on a shared
  server other databases' writes are in it (TASKLINE_BENCH_ADMIN_DATABASE_URL can name a cluster
  of its own);
* the bytes `task` and `processed_command` hold afterwards (tables, indexes and TOAST), per command;
* Redis's CPU: `INFO cpu` (`used_cpu_user` + `used_cpu_sys`), the same server-wide caveat;
* worker CPU and PostgreSQL backend CPU (bench/meter.py).

Through PgBouncer: Debian's `pgbouncer` started for the scenario on a loopback port
(tests/support/pgbouncer.py, transaction pooling) in front of the same PostgreSQL, workers with
TASKLINE_DATABASE_POOLER=pgbouncer; the direct and pooled K=1 drains alternate twice. Without
`pgbouncer` installed those rows say so and the rest runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench.processes import Proc
from bench.scenarios.drain import Side, drain
from bench.services import ADMIN_DATABASE_URL, Env
from bench.suite import Suite
from tests.support.pgbouncer import PgBouncer, pgbouncer_binary

PROCESS_COUNTS = (1, 2, 4)


async def _redis_counters(env: Env) -> tuple[int, float]:
    """Commands the Redis server has processed and the CPU seconds it has used (main thread and all)."""
    info = await env.redis.info("all")
    return int(info["total_commands_processed"]), float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def per_command_costs(env: Env, n: int) -> Side:
    """Redis commands and WAL bytes per command over the drain's timed window."""

    async def side(procs: list[Proc], attached: asyncio.Event, done: asyncio.Event) -> dict[str, Any]:
        admin = await asyncpg.connect(ADMIN_DATABASE_URL)  # env.admin is the meter's meanwhile
        try:
            lsn0 = await admin.fetchval("SELECT pg_current_wal_lsn()")
            r0, cpu0 = await _redis_counters(env)
            attached.set()
            await done.wait()
            r1, cpu1 = await _redis_counters(env)
            wal = await admin.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn0)
        finally:
            await admin.close()
        conn = await env.bench_conn()
        try:  # the drain starts from empty tables: what they hold now is what n commands left
            sizes = await conn.fetchrow(
                "SELECT pg_total_relation_size('task') AS task,"
                " pg_total_relation_size('processed_command') AS processed"
            )
        finally:
            await conn.close()
        return {
            "task_bytes_per_command": sizes["task"] / n,
            "processed_command_bytes_per_command": sizes["processed"] / n,
            "redis_commands_per_command": (r1 - r0 - 1) / n,  # less the first INFO itself
            "redis_cpu_ms_per_command": 1000 * (cpu1 - cpu0) / n,
            "wal_bytes_per_command": float(wal) / n,
        }

    return side


async def fleet(suite: Suite) -> None:
    env, n = suite.env, suite.sizes.commands

    def costs() -> Side:
        return per_command_costs(env, n)

    for k in PROCESS_COUNTS:
        await suite.attempt(
            f"10 fleet floor P={k}", drain(env, f"ffloor{k}", n, False, suite.floors("single", k), "floor", costs())
        )
        await suite.attempt(
            f"10 fleet taskline K={k}", drain(env, f"fleet{k}", n, False, suite.workers(k), "worker", costs())
        )
    await suite.attempt(
        "10 fleet taskline bulk K=1", drain(env, "fleetbulk1", n, True, suite.workers(1), "worker", costs())
    )
    await pooled(suite, costs)


async def pooled(suite: Suite, costs: Callable[[], Side]) -> None:
    """K=1 direct and through PgBouncer, alternating twice, then K=2 through PgBouncer."""
    env, n = suite.env, suite.sizes.commands
    if pgbouncer_binary() is None:
        suite.scenarios["10 fleet pgbouncer"] = {"error": "pgbouncer is not installed (apt-get install -y pgbouncer)"}
        return
    admin = urlsplit(ADMIN_DATABASE_URL)
    bouncer = PgBouncer(admin.hostname or "127.0.0.1", admin.port or 5432, user=admin.username or "postgres")
    bouncer.start()
    try:
        through = {"DATABASE_URL": bouncer.url_for(env.database_url), "TASKLINE_DATABASE_POOLER": "pgbouncer"}
        suite.results["pgbouncer_version"] = bouncer.version
        for round_ in (1, 2):
            await suite.attempt(
                f"10 fleet taskline K=1 direct #{round_}",
                drain(env, f"fdirect{round_}", n, False, suite.workers(1), "worker", costs()),
            )
            await suite.attempt(
                f"10 fleet taskline K=1 pgbouncer #{round_}",
                drain(env, f"fpooled{round_}", n, False, suite.workers(1, extra_env=through), "worker", costs()),
            )
        await suite.attempt(
            "10 fleet taskline K=2 pgbouncer",
            drain(env, "fpooled2", n, False, suite.workers(2, extra_env=through), "worker", costs()),
        )
    finally:
        bouncer.stop()
