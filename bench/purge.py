"""Purge benchmark: how fast the purge deletes, and what it costs the command workers.

    .venv/bin/python -m bench.purge [--completed 1000000] [--open 100000] [--commands 20000] [--rounds 1]

In a database of its own (`taskline_bench_purge_<random>`, created and migrated like the tests
do, dropped at the end) and a Redis queue of its own:

1. seeds `--completed` completed tasks (completed_at 31–90 days ago; `--order correlated`, the
   default, completes them roughly in the order they were written, `--order random` scatters a
   batch over the whole heap, the worst case) and
   `--open` open ones with `generate_series`, then runs the purge with the scheduler's plan but
   no time budget, and reports rows/s; it checks every open task is still there;
2. starts one real `.venv/bin/taskline worker` process, waits for its heartbeat, and, for each
   round, seeds another `--completed` rows (then VACUUM ANALYZE, so the table is settled), times
   how long `--commands` create_task commands (sent with `TaskProducer.send_many`) take to land, first
   with nothing else running, then while a purge of those rows runs; it prints the ratio of
   the two throughputs (goal: >= 0.8) and the purge's rows/s under that load.

Goals (issue): >= 50,000 rows/s and >= 80 % of the command throughput kept. Admin URLs come
from TASKLINE_TEST_ADMIN_DATABASE_URL and TASKLINE_TEST_REDIS_URL (the tests' defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
from redis.asyncio import Redis
from taskline_producer import TaskProducer
from taskline_producer.contract import CreateTask

from tests.support import services
from tests.support.workers import wait_for_heartbeats
from worker.config.settings import Settings
from worker.purge.plan import TASKS, PurgePlan, PurgeSummary
from worker.purge.purger import make_purge_engine, purge

USERS = 1000

SEED_USERS = """
INSERT INTO "user" (id, email, hashed_password)
SELECT g, 'bench' || g || '@example.com', '!' FROM generate_series(1, $1::int) AS g
ON CONFLICT DO NOTHING
"""

SEED_TASKS = """
INSERT INTO task (id, user_id, title, completed, completed_at, created_at, updated_at,
                  title_issued_at, title_command_id, description_issued_at, description_command_id)
SELECT gen_random_uuid(), 1 + g % $2::int, 'seeded task ' || g, $3::bool,
       CASE WHEN $3::bool THEN {completed_at} END,
       now() - interval '91 days', now() - interval '91 days',
       now() - interval '91 days', gen_random_uuid(), now() - interval '91 days', gen_random_uuid()
FROM generate_series(1, $1::int) AS g
"""
COMPLETED_AT = {
    # tasks complete roughly in the order they were written, within a day: neighbours in the
    # completed_at index are neighbours in the heap
    "correlated": "now() - interval '90 days' + (g::float / $1) * interval '59 days' + random() * interval '1 day'",
    # the worst case: every row of a batch on a different heap page
    "random": "now() - interval '31 days' - random() * interval '59 days'",
}


def claim_redis_db() -> str:
    db = services.claim_redis_database(services.REDIS_BASE_URL, "bench.purge")
    if db is None:
        raise SystemExit(
            "no empty Redis database to claim: flush one, wait for a test run,"
            " or allow others with TASKLINE_TEST_REDIS_DBS"
        )
    return f"{services.REDIS_BASE_URL}/{db}"


async def wait_until_up(worker: subprocess.Popen[bytes], redis_url: str, queue: str, log_path: Path) -> None:
    """The worker has written its heartbeat (it fails here, with its log, if it exits first)."""

    def check() -> None:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}: {log_path.read_text(errors='replace')}")

    async with Redis.from_url(redis_url) as redis:
        await wait_for_heartbeats(redis, queue, [worker.pid], timeout=60, check=check)


async def seed(database_url: str, completed: int, open_: int, order: str = "correlated") -> float:
    conn = await asyncpg.connect(database_url)
    try:
        began = time.perf_counter()
        await conn.execute(SEED_USERS, USERS)
        sql = SEED_TASKS.format(completed_at=COMPLETED_AT[order])
        await conn.execute(sql, completed, USERS, True)
        if open_:
            await conn.execute(sql, open_, USERS, False)
        await conn.execute("VACUUM ANALYZE task")
        return time.perf_counter() - began
    finally:
        await conn.close()


async def explain(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        sql = TASKS.delete_sql.text.replace(":cutoff", "$1").replace(":batch", "$2")
        async with conn.transaction():
            rows = await conn.fetch("EXPLAIN " + sql, datetime.now(UTC), 5000)
        return "\n".join(row[0] for row in rows)
    finally:
        await conn.close()


async def count(database_url: str, where: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM task WHERE {where}"))
    finally:
        await conn.close()


async def run_purge(settings: Settings, **changes: Any) -> PurgeSummary:
    engine = make_purge_engine(settings)
    try:
        plan = PurgePlan.from_settings(settings, time_budget=None, **changes)
        return await purge(engine, plan)
    finally:
        await engine.dispose()


async def send_and_wait(
    settings: Settings, n: int, tag: str, purging: asyncio.Task[PurgeSummary] | None = None
) -> tuple[float, bool]:
    """Commands per second from the first send until all `n` create_task commands took effect.

    With a purge running (`purging`), the rate is measured only while the purge runs: if it
    ends first, up to its end. Returns (rate, whether the purge overlapped the whole run)."""
    now = datetime.now(UTC)
    commands = [
        CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1 + i % USERS, title=f"{tag} {i}")
        for i in range(n)
    ]
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    redis = Redis.from_url(settings.redis_url)
    try:
        count_sql = "SELECT count(*) FROM processed_command"
        base = int(await conn.fetchval(count_sql))
        producer = TaskProducer(redis, queue=settings.queue)
        began = time.perf_counter()
        report = await producer.send_many(commands)
        assert report.queued == n, report
        while True:
            done = int(await conn.fetchval(count_sql)) - base
            elapsed = time.perf_counter() - began
            if purging is not None and purging.done():
                return done / elapsed, False
            if done >= n:
                return n / elapsed, True
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        await conn.close()


async def throughput_round(
    settings: Settings, database_url: str, args: argparse.Namespace, index: int
) -> dict[str, Any]:
    # Seed first (it ends with VACUUM ANALYZE, which also clears what the previous purge left):
    # both measurements then see the same settled table, and only the purge differs.
    await seed(database_url, args.completed, 0, args.order)
    alone, _ = await send_and_wait(settings, args.commands, f"alone-{index}")
    purging = asyncio.create_task(run_purge(settings, **plan_changes(args)))
    await asyncio.sleep(0.5)  # let the purge get going
    with_purge, overlapped = await send_and_wait(settings, args.commands, f"with-purge-{index}", purging)
    summary = await purging
    return {
        "alone_per_s": alone,
        "with_purge_per_s": with_purge,
        "ratio": with_purge / alone,
        "purge_rows_per_s": summary.rows_per_second,
        "purge_rows": summary.total,
        "purge_overlapped_whole_run": overlapped,
    }


def plan_changes(args: argparse.Namespace) -> dict[str, float]:
    """`--plan pause_ratio=1 --plan contention_backoff=0` → PurgePlan changes (for both purges)."""
    changes = {}
    for item in args.plan:
        name, _, value = item.partition("=")
        changes[name] = float(value)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completed", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--order", choices=sorted(COMPLETED_AT), default="correlated")
    parser.add_argument(
        "--plan", action="append", default=[], metavar="FIELD=NUMBER", help="override a PurgePlan field"
    )
    args = parser.parse_args()

    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "plan": plan_changes(args)}
    redis_url = claim_redis_db()
    try:
        with services.scratch_database(f"taskline_bench_purge_{secrets.token_hex(4)}") as database_url:
            settings = Settings(
                DATABASE_URL=database_url, REDIS_URL=redis_url, queue=f"taskline:bench:{secrets.token_hex(4)}"
            )
            seconds = asyncio.run(seed(database_url, args.completed, args.open, args.order))
            print(
                f"seeded {args.completed:,} completed ({args.order}) + {args.open:,} open tasks in {seconds:.1f} s",
                flush=True,
            )
            print(asyncio.run(explain(database_url)), flush=True)
            summary = asyncio.run(run_purge(settings, **plan_changes(args)))
            left_open = asyncio.run(count(database_url, "NOT completed"))
            left_completed = asyncio.run(count(database_url, "completed"))
            print(
                f"purge alone: {summary.total:,} rows in {summary.seconds:.2f} s = {summary.rows_per_second:,.0f}"
                f" rows/s in {summary.batches} batches; open tasks left {left_open:,} (of {args.open:,}),"
                f" completed left {left_completed:,}",
                flush=True,
            )
            result["purge_alone"] = {
                "rows": summary.total,
                "seconds": round(summary.seconds, 3),
                "rows_per_s": round(summary.rows_per_second),
                "batches": summary.batches,
                "open_kept": left_open == args.open,
            }
            log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-purge-worker-{secrets.token_hex(3)}.log"
            env = dict(
                os.environ,
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                TASKLINE_QUEUE=settings.queue,
                TASKLINE_LOG_FORMAT="json",
                TASKLINE_LOG_LEVEL="WARNING",
            )
            with log_path.open("ab") as log:
                worker = subprocess.Popen(
                    [str(Path(sys.executable).parent / "taskline"), "worker"], env=env, stdout=log, stderr=log
                )
            try:
                asyncio.run(wait_until_up(worker, redis_url, settings.queue, log_path))
                rounds = []
                for index in range(args.rounds):
                    outcome = asyncio.run(throughput_round(settings, database_url, args, index))
                    rounds.append(outcome)
                    print(
                        f"round {index + 1}: commands alone {outcome['alone_per_s']:,.0f}/s, with a purge running"
                        f" {outcome['with_purge_per_s']:,.0f}/s: {outcome['ratio']:.0%} kept; the purge meanwhile"
                        f" {outcome['purge_rows_per_s']:,.0f} rows/s"
                        f" (overlapped the whole run: {outcome['purge_overlapped_whole_run']})",
                        flush=True,
                    )
                result["rounds"] = rounds
                ratio = statistics.median(r["ratio"] for r in rounds)
                result["median_ratio"] = ratio
                print(
                    f"purge alone {result['purge_alone']['rows_per_s']:,} rows/s (goal >= 50,000);"
                    f" command throughput kept with a purge running, median of {len(rounds)} round(s):"
                    f" {ratio:.0%} (goal >= 80%); load average before/after:"
                    f" {result['load_before'][0]:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
                    flush=True,
                )
            finally:
                worker.terminate()
                worker.wait(30)
    finally:
        services.flush_redis_database(redis_url)
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
