"""The benchmark's services: a PostgreSQL database and a Redis database number of its own.

`setup()` creates `taskline_bench_<random>` (migrated, users 1..`USERS`) and claims a Redis
database number from 15 downwards with the test suite's claim (tests/support/services.py: the
first empty one, in one atomic step, so a test run and the benchmark never share one); `teardown()`
drops the database and flushes the Redis database. `Env` carries both, an admin connection kept
open for PostgreSQL's statistics, and a temporary directory for the processes' logs.

TASKLINE_BENCH_ADMIN_DATABASE_URL and TASKLINE_BENCH_REDIS_URL override the tests' URLs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tests.support import services

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DATABASE_URL = os.environ.get("TASKLINE_BENCH_ADMIN_DATABASE_URL", services.ADMIN_DATABASE_URL)
REDIS_BASE_URL = os.environ.get("TASKLINE_BENCH_REDIS_URL", services.REDIS_BASE_URL)
REDIS_CLAIM_TTL_S = 7200
USERS = 100


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Env:
    run_id: str
    db_name: str
    database_url: str
    redis_url: str
    redis_db: int
    redis: Redis
    admin: asyncpg.Connection
    tmp: Path
    port_redis: int
    notes: list[str] = field(default_factory=list)

    async def bench_conn(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)


def claim_redis_db() -> int:
    """A Redis database number nobody else uses (scanned down from the highest allowed by
    TASKLINE_TEST_REDIS_DBS, default 15; tests scan up from the lowest)."""
    allowed = services.allowed_redis_databases()
    db = services.claim_redis_database(REDIS_BASE_URL, "bench", reversed(allowed), ttl_s=REDIS_CLAIM_TTL_S)
    if db is None:
        raise SystemExit(
            f"no empty Redis database ({allowed}) to claim for the benchmark: flush one, wait for a test run,"
            " or allow others with TASKLINE_TEST_REDIS_DBS"
        )
    return db


async def setup() -> Env:
    run_id = secrets.token_hex(4)
    db_name = f"taskline_bench_{run_id}"
    database_url = await services.create_database(db_name, ADMIN_DATABASE_URL)
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            'INSERT INTO "user" (id, email, hashed_password) VALUES ($1, $2, $3)',
            [(i, f"bench{i}@example.com", "!") for i in range(1, USERS + 1)],
        )
    finally:
        await conn.close()
    try:
        redis_db = claim_redis_db()
    except SystemExit:
        await admin.close()
        await services.drop_database(db_name, ADMIN_DATABASE_URL)
        raise
    redis = Redis.from_url(f"{REDIS_BASE_URL}/{redis_db}")
    tmp = Path(tempfile.mkdtemp(prefix="taskline-bench-"))
    port = int(REDIS_BASE_URL.rsplit(":", 1)[-1].split("/")[0]) if REDIS_BASE_URL.count(":") >= 2 else 6379
    log(f"database {db_name}, Redis db {redis_db}, logs in {tmp}")
    return Env(run_id, db_name, database_url, f"{REDIS_BASE_URL}/{redis_db}", redis_db, redis, admin, tmp, port)


async def teardown(env: Env, keep_logs: bool) -> None:
    with contextlib.suppress(Exception):
        await env.redis.flushdb()
        await env.redis.aclose()
    with contextlib.suppress(Exception):
        await env.admin.close()
    with contextlib.suppress(Exception):
        await services.drop_database(env.db_name, ADMIN_DATABASE_URL)
    if not keep_logs:
        shutil.rmtree(env.tmp, ignore_errors=True)
    log(f"dropped {env.db_name}, flushed Redis db {env.redis_db}")


async def reset_tables(env: Env) -> None:
    conn = await env.bench_conn()
    try:
        await conn.execute("TRUNCATE task, processed_command, dead_letter")
    finally:
        await conn.close()


async def xact_counts(env: Env) -> tuple[int, int]:
    await env.admin.execute("SELECT pg_stat_clear_snapshot()")
    row = await env.admin.fetchrow(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", env.db_name
    )
    assert row is not None, env.db_name
    return int(row[0]), int(row[1])


async def backend_pids(env: Env, exclude: Sequence[int] = ()) -> list[int]:
    rows = await env.admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", env.db_name)
    return [r[0] for r in rows if r[0] not in exclude]
