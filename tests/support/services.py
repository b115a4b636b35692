"""Scratch services for one test run or one benchmark run.

* A PostgreSQL database of its own (`scratch_database`, or `create_database` / `drop_database`
  from async code), made through the admin URL, migrated with the worker's own migrations, and
  dropped `WITH (FORCE)` at the end.
* A Redis database number of its own (`claim_redis_database`): the first *empty* one among the
  candidates, claimed in one atomic step by a Lua script that writes the claim key only if the
  database holds nothing. A database that holds anything (another run's, or someone's data) is
  left exactly as it was. The test suite scans up from the lowest allowed number, the benchmark
  down from the highest; both use `CLAIM_KEY`, so a test run and a benchmark never share a
  database. TASKLINE_TEST_REDIS_DBS bounds the numbers either may take ("3-7", "3,5,9",
  "3-5,9"; default 1-15), to keep them off databases that others use.

Admin URLs come from TASKLINE_TEST_ADMIN_DATABASE_URL and TASKLINE_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator

import asyncpg
import redis as redis_sync

ADMIN_DATABASE_URL = os.environ.get("TASKLINE_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("TASKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379")

REDIS_DBS_VARIABLE = "TASKLINE_TEST_REDIS_DBS"
REDIS_DBS_DEFAULT = "1-15"

CLAIM_KEY = "taskline-test:claimed-by"
"""The key that marks a Redis database as taken (its value names the owner)."""
CLAIM_TTL_S = 3600

# Claims an empty database in one atomic step: a database that holds anything is left exactly
# as it was, without even a claim key written into it.
_CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def swap_database(url: str, name: str) -> str:
    """`url` with its database name replaced by `name`."""
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(name: str, admin_url: str = ADMIN_DATABASE_URL, *, migrate: bool = True) -> str:
    """Create database `name` (migrated to head unless `migrate=False`); returns its URL. A
    migration that fails drops the database again."""
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    url = swap_database(admin_url, name)
    if migrate:
        from worker.store.migrate import upgrade

        try:
            await asyncio.to_thread(upgrade, url)  # alembic's env.py runs an event loop of its own
        except BaseException:
            await drop_database(name, admin_url)
            raise
    return url


async def drop_database(name: str, admin_url: str = ADMIN_DATABASE_URL) -> None:
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(name: str, admin_url: str = ADMIN_DATABASE_URL, *, migrate: bool = True) -> Iterator[str]:
    """For synchronous callers: a fresh database `name` (migrated unless `migrate=False`), its
    URL, dropped at the end."""
    url = asyncio.run(create_database(name, admin_url, migrate=migrate))
    try:
        yield url
    finally:
        asyncio.run(drop_database(name, admin_url))


def parse_redis_dbs(text: str) -> list[int]:
    """Database numbers from "3-7", "3,5,9" or "3-5,9", ascending; a bad value is an error naming
    TASKLINE_TEST_REDIS_DBS."""
    numbers: set[int] = set()
    try:
        for part in text.replace(" ", "").split(","):
            low, dash, high = part.partition("-")
            first, last = int(low), int(high if dash else low)
            if not 0 <= first <= last:
                raise ValueError(part)
            numbers.update(range(first, last + 1))
    except ValueError:
        raise ValueError(f"{REDIS_DBS_VARIABLE}={text!r}: give database numbers such as 3-7, 3,5,9 or 3-5,9") from None
    return sorted(numbers)


def allowed_redis_databases() -> list[int]:
    """The Redis database numbers tests and benchmarks may claim (TASKLINE_TEST_REDIS_DBS), ascending."""
    return parse_redis_dbs(os.environ.get(REDIS_DBS_VARIABLE) or REDIS_DBS_DEFAULT)


def claim_redis_database(
    base_url: str,
    owner: str,
    candidates: Iterable[int] | None = None,
    key: str = CLAIM_KEY,
    ttl_s: int = CLAIM_TTL_S,
) -> int | None:
    """The first empty database number among `candidates` (default: the allowed ones, from the
    lowest), claimed for `owner` (the value of `key`, kept `ttl_s` seconds); None if none is empty."""
    for db in allowed_redis_databases() if candidates is None else candidates:
        client = redis_sync.Redis.from_url(f"{base_url}/{db}")
        try:
            if client.eval(_CLAIM_IF_EMPTY, 1, key, owner, str(ttl_s)):
                return db
        finally:
            client.close()
    return None


def flush_redis_database(url: str) -> None:
    """Empty the claimed database at `url` (its claim key goes with it)."""
    client = redis_sync.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
