"""Shared fixtures: a database and a Redis namespace of this test run's own, cleaned up after.

Admin connections come from TASKLINE_TEST_ADMIN_DATABASE_URL (default: the local postgres
superuser) and TASKLINE_TEST_REDIS_URL (default: local Redis). Each run creates its own
database `taskline_test_<random>` and claims a Redis database number of its own (1–15, or
those TASKLINE_TEST_REDIS_DBS allows, e.g. "3-7" or "3,5,9"), with
the helpers the benchmark uses too (tests/support/services.py); each test gets its own queue
name.

TASKLINE_TEST_THROUGH_PGBOUNCER=1 routes what the tests run (workers, the CLI, the `settings` of
in-process workers) through a PgBouncer of the run's own in transaction pooling
(tests/support/pgbouncer.py), with TASKLINE_DATABASE_POOLER=pgbouncer (its port is a random
one, which `auto` cannot recognise). The `db` fixture, which arranges and asserts, still
connects directly.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.support.pgbouncer import PgBouncer, pgbouncer_binary
from tests.support.services import (
    ADMIN_DATABASE_URL,
    REDIS_BASE_URL,
    claim_redis_database,
    flush_redis_database,
    scratch_database,
)
from worker.config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = secrets.token_hex(4)


THROUGH_PGBOUNCER = os.environ.get("TASKLINE_TEST_THROUGH_PGBOUNCER", "") not in ("", "0")


@pytest.fixture(scope="session")
def direct_database_url() -> Iterator[str]:
    """A fresh, migrated database for this test run, dropped at the end; always PostgreSQL itself."""
    with scratch_database(f"taskline_test_{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="session")
def session_pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer of this run's own (transaction pooling) in front of the test PostgreSQL."""
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install -y pgbouncer, or scripts/services.sh --tests)")
    admin = urlsplit(ADMIN_DATABASE_URL)
    bouncer = PgBouncer(
        admin.hostname or "127.0.0.1",
        admin.port or 5432,
        user=admin.username or "postgres",
    )
    bouncer.start()
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def database_url(direct_database_url: str, request: pytest.FixtureRequest) -> str:
    """The database what is under test uses: PostgreSQL itself, or through the run's PgBouncer
    with TASKLINE_TEST_THROUGH_PGBOUNCER=1."""
    if not THROUGH_PGBOUNCER:
        return direct_database_url
    bouncer: PgBouncer = request.getfixturevalue("session_pgbouncer")
    return bouncer.url_for(direct_database_url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number claimed by this run (flushed at the end)."""
    db = claim_redis_database(REDIS_BASE_URL, RUN_ID)
    if db is None:
        allowed = os.environ.get("TASKLINE_TEST_REDIS_DBS") or "1-15"
        pytest.fail(
            f"no empty Redis database ({allowed}) to claim for this test run:"
            " flush one, or allow others with TASKLINE_TEST_REDIS_DBS"
        )
    yield f"{REDIS_BASE_URL}/{db}"
    flush_redis_database(f"{REDIS_BASE_URL}/{db}")


@pytest.fixture
def queue() -> str:
    return f"taskline:test:{secrets.token_hex(4)}"


@pytest.fixture
def settings(database_url: str, redis_url: str, queue: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        queue=queue,
        poll_delay=0.005,
        retry_base_delay=0.05,
        retry_max_delay=0.5,
        not_yet_window=60,
        log_format="console",
        database_pooler="pgbouncer" if THROUGH_PGBOUNCER else "auto",
    )  # type: ignore[call-arg]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def db(direct_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database (directly), for arranging and asserting."""
    conn = await asyncpg.connect(direct_database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def users(db: asyncpg.Connection) -> list[int]:
    """Users 1–20 exist."""
    await db.executemany(
        'INSERT INTO "user" (id, email, hashed_password) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [(i, f"user{i}@example.com", "!") for i in range(1, 21)],
    )
    return list(range(1, 21))


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Any]:
    """The worker's own engine and session factory (pool of 10), disposed after the test."""
    from worker.store.engine import make_engine, make_sessions

    engine = make_engine(settings)
    yield make_sessions(engine)
    await engine.dispose()


async def taskline(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `taskline` command of this venv against the test's services; output captured."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "taskline"), *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def run_burst(settings: Settings, **overrides: Any) -> Any:
    """Run an in-process worker until the queue is empty (arq burst mode); returns the worker."""
    from worker.arq_seam.wiring import build_worker

    worker = build_worker(settings, burst=True, poll_delay=0, handle_signals=False, **overrides)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


async def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Await `predicate()` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def procfile_command(process: str) -> list[str]:
    """The command of a Procfile process type, with taskline's entry point from this venv."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            argv = shlex.split(command)
            bindir = Path(sys.executable).parent
            if (bindir / argv[0]).exists():
                argv[0] = str(bindir / argv[0])
            return argv
    raise KeyError(process)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        TASKLINE_QUEUE=settings.queue,
        TASKLINE_POLL_DELAY=str(settings.poll_delay),
        TASKLINE_RETRY_BASE_DELAY=str(settings.retry_base_delay),
        TASKLINE_RETRY_MAX_DELAY=str(settings.retry_max_delay),
        TASKLINE_NOT_YET_WINDOW=str(settings.not_yet_window),
        TASKLINE_TRANSIENT_TRIES=str(settings.transient_tries),
        TASKLINE_DATABASE_POOLER=settings.database_pooler,
        TASKLINE_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A real `worker` process from the Procfile."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            procfile_command("worker"), env=worker_env(settings, **env), stdout=self._log, stderr=subprocess.STDOUT
        )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        process = WorkerProcess(settings, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """scripts/test.sh runs the suite in several processes with pytest-xdist's `--dist loadgroup`:
    a test file stays in one process (its module fixtures are made once), except the tests that name
    a group of their own (the benchmark smoke runs, minutes each, spread over the processes)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
