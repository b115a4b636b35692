"""Behind PgBouncer (Debian's 1.18, transaction pooling, started by the run on a loopback port):
the driver trap it sets, and the worker, its crash recovery, the relay and the tools through it.

Every test here runs what is under test through the run's PgBouncer whatever
TASKLINE_TEST_THROUGH_PGBOUNCER says; `db` arranges and asserts directly. The whole crash and
failure suites run through it with `TASKLINE_TEST_THROUGH_PGBOUNCER=1 pytest
tests/acceptance/test_crashes.py tests/integration/test_failure_paths.py` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from taskline_producer import TaskProducer
from taskline_producer.outbox import outbox_table

from tests.acceptance.test_crashes import (
    _at_least,
    _queue_empty,
    assert_applied_exactly_once,
    make_plan,
    processed_count,
    send_in_chunks,
    started,
)
from tests.acceptance.test_outbox_relay import RelayProcess
from tests.conftest import taskline, wait_for
from tests.support.outbox import creates_and_updates, insert_commands, reset_outbox
from tests.support.pgbouncer import PgBouncer
from worker.config.settings import Settings
from worker.store.engine import for_pooler

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]


@pytest.fixture
def settings(settings: Settings, session_pgbouncer: PgBouncer, direct_database_url: str) -> Settings:
    """The suite's settings, with DATABASE_URL through the run's PgBouncer."""
    return settings.model_copy(
        update={"database_url": session_pgbouncer.url_for(direct_database_url), "database_pooler": "pgbouncer"}
    )


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def test_the_pgbouncer_under_test_is_debians_transaction_pooler(session_pgbouncer: PgBouncer) -> None:
    """The tests run against the PgBouncer Debian 12 ships (1.18: no prepared statements in
    transaction pooling), in transaction pooling."""
    assert session_pgbouncer.version.startswith("PgBouncer 1.")
    modes = {row["key"]: row["value"] for row in session_pgbouncer.console("SHOW CONFIG")}
    assert modes["pool_mode"] == "transaction"


async def _hammer(engines: list[AsyncEngine], rounds: int = 3, each: int = 200) -> dict[str, int]:
    """Concurrent two-statement transactions over several engines; the errors by first line."""

    async def one(engine: AsyncEngine, i: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT cast(:x AS int) + 1"), {"x": i})
            await conn.execute(text("SELECT cast(:x AS text) || 'a'"), {"x": str(i)})

    errors: dict[str, int] = {}
    for _ in range(rounds):
        results = await asyncio.gather(
            *(one(engines[i % len(engines)], i) for i in range(each)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                line = str(result).splitlines()[0]
                errors[line] = errors.get(line, 0) + 1
    return errors


def _engines(url: str, mode: Any, count: int = 3) -> list[AsyncEngine]:
    engines = []
    for _ in range(count):
        connect_args: dict[str, Any] = {}
        engines.append(create_async_engine(for_pooler(url, mode, connect_args), pool_size=8, connect_args=connect_args))
    return engines


async def test_asyncpgs_named_statements_break_behind_transaction_pooling_and_unnamed_ones_do_not(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Three engines sharing PgBouncer's server connections: asyncpg's own statement cache fails
    ("prepared statement ... does not exist"); taskline's pgbouncer mode fails nothing and leaves
    no prepared statement behind on the server connections."""
    url = settings.database_url
    naive = _engines(url, "none")
    try:
        naive_errors = await _hammer(naive)
    finally:
        for engine in naive:
            await engine.dispose()
    assert any("prepared statement" in line for line in naive_errors), naive_errors

    safe = _engines(url, "pgbouncer")
    try:
        assert await _hammer(safe) == {}
    finally:
        for engine in safe:
            await engine.dispose()
    # What the safe engines prepared was unnamed: through PgBouncer, the server connections hold
    # no prepared statement but the naive engines' (asyncpg's __asyncpg_stmt_N__ names).
    probe = _engines(url, "pgbouncer", count=1)[0]
    try:
        for _ in range(5):
            async with probe.connect() as conn:
                names = (await conn.execute(text("SELECT name FROM pg_prepared_statements"))).scalars().all()
            assert all(name.startswith("__asyncpg_stmt_") for name in names), names
    finally:
        await probe.dispose()


async def test_a_worker_applies_a_stream_exactly_once_through_pgbouncer(
    settings: Settings,
    redis: Redis,
    db: asyncpg.Connection,
    users: list[int],
    start_worker: Any,
    session_pgbouncer: PgBouncer,
) -> None:
    """A real worker process behind PgBouncer applies ~500 create/update/complete commands once
    each, and the transactions went through PgBouncer."""
    name = _database_name(settings.database_url)
    before = session_pgbouncer.transactions(name)
    worker = start_worker()
    await started(worker)
    commands = make_plan(random.Random(19), tasks=100)
    ids = [c.command_id for c in commands]
    await send_in_chunks(TaskProducer(redis, queue=settings.queue), commands, chunk=50, pause=0.02)
    await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=60, interval=0.2)
    await assert_applied_exactly_once(db, commands, settings.queue)
    assert session_pgbouncer.transactions(name) - before >= 10
    assert "prepared statement" not in worker.log()
    assert worker.proc.poll() is None, worker.log()


async def test_a_worker_killed_mid_stream_behind_pgbouncer_loses_and_doubles_nothing(
    settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int], start_worker: Any
) -> None:
    """SIGKILL mid-stream behind PgBouncer (its server connections outlive the worker's client
    connections): a new worker applies every command exactly once."""
    env = {"TASKLINE_JOB_TIMEOUT": "2"}  # a dead worker's claims expire after 2 + 5 + 10 = 17 s
    commands = make_plan(random.Random(1919), tasks=100)
    ids = [c.command_id for c in commands]
    worker = start_worker(**env)
    await started(worker)
    sender = asyncio.create_task(
        send_in_chunks(TaskProducer(redis, queue=settings.queue), commands, chunk=25, pause=0.03)
    )
    await wait_for(lambda: _at_least(processed_count(db, ids), 100), timeout=30, interval=0.005)
    worker.signal(signal.SIGKILL)
    assert worker.proc.wait(5) == -signal.SIGKILL
    at_kill = await processed_count(db, ids)
    await sender
    assert at_kill < len(ids), "everything was applied before the kill: nothing was tested"
    replacement = start_worker(**env)
    await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=60, interval=0.2)
    await wait_for(lambda: _queue_empty(redis, settings.queue), timeout=60, interval=0.2)
    await assert_applied_exactly_once(db, commands, settings.queue)
    assert replacement.proc.poll() is None, replacement.log()


async def test_pgbouncers_server_connections_terminated_mid_run_do_not_stop_the_worker(
    settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int], start_worker: Any
) -> None:
    """pg_terminate_backend on every server connection PgBouncer holds, mid-run: the worker's
    commands fail as transient, are retried, and every one is applied exactly once."""
    worker = start_worker()
    await started(worker)
    commands = make_plan(random.Random(1920), tasks=120)
    terminated: list[int] = []

    async def terminate(chunk: int) -> None:
        if chunk % 5 == 4:
            rows = await db.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            terminated.append(sum(1 for row in rows if row[0]))

    await send_in_chunks(TaskProducer(redis, queue=settings.queue), commands, chunk=25, pause=0.1, between=terminate)
    assert sum(terminated) > 0, terminated
    ids = [c.command_id for c in commands]
    await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=60, interval=0.2)
    assert worker.proc.poll() is None, worker.log()
    await assert_applied_exactly_once(db, commands, settings.queue)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0


async def test_the_relay_and_the_tools_work_through_pgbouncer(
    settings: Settings,
    db: asyncpg.Connection,
    direct_database_url: str,
    users: list[int],
    start_worker: Any,
    tmp_path: Path,
) -> None:
    """Behind PgBouncer: the outbox relay publishes committed commands that a worker applies; then
    `taskline migrate`, `status --json`, `trace`, `dead-letters list --json` and `purge` all
    answer (exit 0) through it."""
    await reset_outbox(direct_database_url)
    worker = start_worker()
    await started(worker)
    relay = RelayProcess(settings, tmp_path / "relay.log")
    try:
        commands = creates_and_updates(60)
        async with db.transaction():
            await insert_commands(db, commands)
        ids = [c.command_id for c in commands]
        await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=60, interval=0.2)
        confirmed = f"SELECT count(*) FROM {outbox_table.name} WHERE confirmed_at IS NOT NULL"
        await wait_for(lambda: _at_least(db.fetchval(confirmed), len(ids)), timeout=60, interval=0.2)
        assert "prepared statement" not in relay.log()
    finally:
        relay.stop()

    for args in (
        ("migrate",),
        ("status", "--json"),
        ("trace", str(ids[0])),
        ("dead-letters", "list", "--json"),
        ("purge", "--dry-run"),
        ("purge",),
    ):
        done = await taskline(settings, *args)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
        assert "prepared statement" not in done.stdout + done.stderr
    status = json.loads((await taskline(settings, "status", "--json")).stdout)
    assert isinstance(status, dict)


async def test_a_worker_left_at_auto_behind_pgbouncer_on_another_port_says_what_to_set(
    settings: Settings, start_worker: Any
) -> None:
    """`auto` cannot recognise PgBouncer on a random port; the worker sees PostgreSQL answer on
    another port than the one it dialled and logs a WARNING naming TASKLINE_DATABASE_POOLER."""
    worker = start_worker(TASKLINE_DATABASE_POOLER="auto")
    await started(worker)
    await wait_for(lambda: "TASKLINE_DATABASE_POOLER=pgbouncer" in worker.log(), timeout=30)
    line = next(line for line in worker.log().splitlines() if "TASKLINE_DATABASE_POOLER=pgbouncer" in line)
    assert json.loads(line)["level"] == "warning"
