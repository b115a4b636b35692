"""The outbox end to end with real worker and relay processes (the Procfile's `worker` and
`relay`): whatever happens to Redis or to the relays, every command a producer committed to the
outbox is applied exactly once, and no command of a rolled-back transaction is applied.

Each scenario streams commands into the outbox in committed transactions (and one rolled back),
disrupts something mid-stream, and waits until every committed row is confirmed; then it checks
the worker's tables: one processed_command row per committed command, none for the rolled-back
ones, and each task as its create and update left it. Redis is a redis-server of the test's own
(no persistence), so a FLUSHALL or a restart touches nothing else.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from taskline_producer import keys
from taskline_producer.contract import Command, CreateTask
from taskline_producer.outbox import add_to_outbox

from tests.conftest import WorkerProcess, procfile_command, taskline, wait_for, worker_env
from tests.support.outbox import creates_and_updates, insert_commands, reset_outbox
from tests.support.postgres_server import PrivatePostgres, postgres_bindir
from tests.support.redis_server import PrivateRedis
from worker.config.settings import Settings
from worker.relay.redis_side import read_states

pytestmark = pytest.mark.acceptance

RELAY_ENV = {
    "TASKLINE_RELAY_REPUBLISH_AFTER": "1.5",
    "TASKLINE_RELAY_POLL_DELAY": "0.05",
    "TASKLINE_RELAY_BATCH": "200",
    "TASKLINE_HEARTBEAT_INTERVAL": "0.5",
}


class RelayProcess:
    """A real `relay` process from the Procfile."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            procfile_command("relay"),
            env=worker_env(settings, **{**RELAY_ENV, **env}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def stack(settings: Settings, private_redis: PrivateRedis, tmp_path: Path, users: list[int]) -> Any:
    """Settings on the private Redis, an empty outbox, and starters for workers and relays (all
    stopped at the end)."""
    await reset_outbox(settings.database_url)
    own = settings.model_copy(update={"redis_url": private_redis.url})
    processes: list[Any] = []

    def worker() -> WorkerProcess:
        process = WorkerProcess(own, tmp_path / f"worker-{len(processes)}.log")
        processes.append(process)
        return process

    def relay() -> RelayProcess:
        process = RelayProcess(own, tmp_path / f"relay-{len(processes)}.log")
        processes.append(process)
        return process

    yield own, worker, relay
    for process in processes:
        process.stop()


async def _commit_in_batches(db: asyncpg.Connection, commands: list[Command], batch: int = 100) -> None:
    for start in range(0, len(commands), batch):
        async with db.transaction():
            await insert_commands(db, commands[start : start + batch])


async def _roll_back(database_url: str, commands: list[CreateTask]) -> None:
    """A service's transaction that adds commands with the producer's call, then fails."""
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session, session.begin():
            add_to_outbox(session, commands)
            await session.flush()
            await session.rollback()
    finally:
        await engine.dispose()


async def _all_confirmed(db: asyncpg.Connection, expected: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE confirmed_at IS NOT NULL") == expected


async def _check_applied_once(db: asyncpg.Connection, committed: list[Command], rolled_back: list[CreateTask]) -> None:
    ids = [c.command_id for c in committed]
    applied = {
        r["command_id"]
        for r in await db.fetch("SELECT command_id FROM processed_command WHERE command_id = ANY($1::uuid[])", ids)
    }
    assert applied == set(ids)
    gone = [c.command_id for c in rolled_back]
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", gone) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in rolled_back]) == 0
    )
    titles = {
        r["id"]: r["title"]
        for r in await db.fetch("SELECT id, title FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in committed])
    }
    expected: dict[UUID, str] = {}
    for command in committed:  # creates_and_updates: each task's create, then its update (last wins)
        expected[command.task_id] = command.title or ""  # type: ignore[union-attr]
    assert titles == expected
    assert await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE outcome IS NULL") == 0


async def _scenario(
    stack: Any,
    db: asyncpg.Connection,
    disrupt: Callable[[list[RelayProcess]], Awaitable[None]],
    *,
    relays: int = 1,
    total: int = 800,
) -> tuple[list[Command], list[RelayProcess]]:
    settings, start_worker, start_relay = stack
    commands = creates_and_updates(total, seed=total)
    rolled_back = [c for c in creates_and_updates(20, seed=7) if isinstance(c, CreateTask)]
    start_worker()
    started = [start_relay() for _ in range(relays)]
    half = len(commands) // 2
    await _commit_in_batches(db, commands[:half])
    await _roll_back(settings.database_url, rolled_back)
    await wait_for(lambda: _published_at_least(db, half // 3), timeout=30)
    await disrupt(started)
    await _commit_in_batches(db, commands[half:])
    try:
        await wait_for(lambda: _all_confirmed(db, len(commands)), timeout=45, interval=0.2)
    except AssertionError:
        states = await db.fetch(
            "SELECT publications, outcome, invalid_reason IS NOT NULL AS invalid, published_at IS NULL AS unpublished,"
            " count(*) FROM taskline_outbox GROUP BY 1, 2, 3, 4"
        )
        stuck = [
            r["command_id"] for r in await db.fetch("SELECT command_id FROM taskline_outbox WHERE outcome IS NULL")
        ]
        redis = Redis.from_url(settings.redis_url)
        try:
            seen = await read_states(redis, stuck[:5])
            detail = [(await redis.get(keys.job_key(i)), await redis.zscore(settings.queue, i)) for i in stuck[:2]]
        finally:
            await redis.aclose()
        raise AssertionError(
            f"not every row confirmed: {[tuple(r) for r in states]}; in Redis: {seen} {detail}"
        ) from None
    await _check_applied_once(db, commands, rolled_back)
    return commands, started


async def _published_at_least(db: asyncpg.Connection, count: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE published_at IS NOT NULL") >= count


async def test_flushall_mid_run_loses_nothing(stack: Any, private_redis: PrivateRedis, db: asyncpg.Connection) -> None:
    """A FLUSHALL while commands are queued: the relay publishes again what Redis lost, and every
    committed command is applied exactly once, no rolled-back one at all."""

    async def flush(_: list[RelayProcess]) -> None:
        private_redis.flushall()

    commands, _ = await _scenario(stack, db, flush)
    settings = stack[0]
    await wait_for(lambda: _status_shows_the_outbox(settings), timeout=20)
    traced = await taskline(settings, "trace", str(commands[0].command_id), "--json")
    story = json.loads(traced.stdout)
    assert story["states"][0] == "applied"
    assert story["outbox"][0]["state"].startswith("confirmed: ")


async def _status_shows_the_outbox(settings: Settings) -> bool:
    """`taskline status --json` carries the relay's row and the outbox's figures (all confirmed)."""
    done = await taskline(settings, "status", "--json")
    outbox = json.loads(done.stdout).get("outbox") or {}
    figures = outbox.get("figures") or {}
    return bool(outbox.get("relays")) and figures.get("backlog") == 0 and outbox["relays"][0]["published"] > 0


async def test_redis_restarted_without_persistence_loses_nothing(
    stack: Any, private_redis: PrivateRedis, db: asyncpg.Connection
) -> None:
    """Redis killed and restarted empty mid-run: worker and relay reconnect, the relay warns once
    naming REDIS_URL, publishes again what was lost, and everything is applied exactly once."""

    async def restart(_: list[RelayProcess]) -> None:
        await asyncio.to_thread(private_redis.restart_empty)

    _, relays = await _scenario(stack, db, restart)
    relays[0].stop()
    log = relays[0].log()
    assert log.count("(REDIS_URL); ") <= 1, log[-3000:]


async def test_two_relays_at_once_killed_mid_run_lose_nothing(stack: Any, db: asyncpg.Connection) -> None:
    """Two relays at once, both SIGKILLed while publishing, a new one started: nothing committed is
    lost, nothing is applied twice. (That two relays publish each row once when nothing breaks is
    pinned in-process: tests/integration/test_outbox.py.)"""
    _, _, start_relay = stack

    async def kill_relays(relays: list[RelayProcess]) -> None:
        for relay in relays:
            relay.kill()
        start_relay()

    _, killed = await _scenario(stack, db, kill_relays, relays=2)
    assert [r.proc.returncode for r in killed] == [-signal.SIGKILL, -signal.SIGKILL]


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    try:
        server = PrivatePostgres(bindir)
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run a PostgreSQL server as")
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _outbox_outage_warnings(log: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line["level"] == "warning" and "outbox" in line["event"]]


async def test_the_outbox_database_down_and_back_loses_nothing(
    stack: Any, private_postgres: PrivatePostgres, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The outbox lives in a PostgreSQL server of its own (TASKLINE_OUTBOX_DATABASE_URL, with a
    ?password= the test checks is never shown). Stopped mid-stream, then started again: the relay
    stays up, says so once at WARNING naming TASKLINE_OUTBOX_DATABASE_URL and once at INFO when it
    is back, catches up, and every committed command is applied exactly once. `taskline status`
    and `taskline metrics` show the relay's figures and never the password."""
    settings, start_worker, _ = stack
    secret = "s3cret-outbox"
    outbox_url = f"{private_postgres.url}?password={secret}"  # trust authentication ignores it
    await reset_outbox(private_postgres.url)
    commands = creates_and_updates(600, seed=600)
    start_worker()
    relay = RelayProcess(settings, tmp_path / "relay-outage.log", TASKLINE_OUTBOX_DATABASE_URL=outbox_url)
    try:
        outbox = await asyncpg.connect(private_postgres.url)
        try:
            await _commit_in_batches(outbox, commands[:300])
            await wait_for(lambda: _published_at_least(outbox, 100), timeout=30)
        finally:
            await outbox.close()
        await asyncio.to_thread(private_postgres.stop)

        async def warned() -> bool:
            assert relay.proc.poll() is None, relay.log()[-3000:]
            return bool(_outbox_outage_warnings(relay.log()))

        await wait_for(warned, timeout=30, interval=0.2)
        await asyncio.sleep(2)  # the relay keeps failing for a while: still one warning
        await asyncio.to_thread(private_postgres.start)
        outbox = await asyncpg.connect(private_postgres.url)
        try:
            await _commit_in_batches(outbox, commands[300:])
            await wait_for(lambda: _all_confirmed(outbox, len(commands)), timeout=60, interval=0.2)
            # a batch published just before the stop, whose commit the stop cut, is published again:
            # its second job finds the command applied, so the row may be confirmed as `duplicate`
            outcomes = {r["outcome"] for r in await outbox.fetch("SELECT DISTINCT outcome FROM taskline_outbox")}
            assert outcomes <= {"applied", "duplicate"}, outcomes
        finally:
            await outbox.close()
        ids = [c.command_id for c in commands]
        assert (
            await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", ids) == 600
        )
        titles = dict(
            await db.fetch("SELECT id, title FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in commands])
        )
        assert titles == {c.task_id: c.title for c in commands[1::2]}  # each task's update won

        env = worker_env(settings, TASKLINE_OUTBOX_DATABASE_URL=outbox_url)

        async def run(*args: str) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                subprocess.run,
                [*procfile_command("relay")[:-1], *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        metrics = await run("metrics")
        assert "taskline_outbox_published_total" in metrics.stdout, metrics.stderr
        assert 'taskline_outbox_rows{state="unpublished"}' in metrics.stdout
        status = await run("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["outbox"]["relays"]
        traced = await run("trace", str(commands[0].command_id), "--json")
        assert json.loads(traced.stdout)["outbox"][0]["state"].startswith("confirmed: ")
        assert relay.proc.poll() is None, relay.log()[-3000:]
    finally:
        relay.stop()
    log = relay.log()
    warnings = _outbox_outage_warnings(log)
    assert len(warnings) == 1, warnings
    assert "TASKLINE_OUTBOX_DATABASE_URL" in warnings[0]["event"]
    assert log.count("the outbox's PostgreSQL is reachable again") == 1, log[-3000:]
    assert "relay step failed" not in log, log[-3000:]
    for shown in (log, metrics.stdout, metrics.stderr, status.stdout, status.stderr, traced.stdout):
        assert secret not in shown
