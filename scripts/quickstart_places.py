"""Where scripts/quickstart.sh may write its demo: places of its own, never someone else's data.

    python scripts/quickstart_places.py database   # DATABASE_URL: prints created | ours | foreign <why>
    python scripts/quickstart_places.py redis      # prints the Redis URL to use, or refused <why>

database: DATABASE_URL's database is created when it does not exist and marked as the quick
start's own (a comment on the database); one with that mark is reused; any other is "foreign",
and the shell script asks on a terminal or refuses.

redis: with QUICKSTART_REDIS_URL set (the user's REDIS_URL), that database is used if it is
empty (then claimed) or the quick start's own, and refused otherwise. Without it, the database
of REDIS_URL's server that an earlier run marked is reused, else the first empty one from 15 down
to 1 is claimed; never 0. Claiming is one atomic step (a Lua script): a database that holds
anything is left exactly as it was.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from urllib.parse import urlsplit, urlunsplit

DATABASE_MARK = "taskline quickstart: created by scripts/quickstart.sh for its demo; safe to drop"
REDIS_KEY = "taskline-quickstart:owner"
REDIS_MARK = "scripts/quickstart.sh"
REDIS_CANDIDATES = range(15, 0, -1)
# 2: the quick start's own already; 1: was empty, claimed now; 0: holds data of someone else.
CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 2 end
if redis.call('DBSIZE') ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


async def database() -> str:
    import asyncpg

    url = re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", os.environ["DATABASE_URL"])
    base, _, rest = url.rpartition("/")
    name, _, query = rest.partition("?")
    quoted = '"' + name.replace('"', '""') + '"'
    admin_url = f"{base}/postgres" + (f"?{query}" if query else "")
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            pass  # someone made it at this very moment: look at it below
        else:
            mark = DATABASE_MARK.replace("'", "''")
            await admin.execute(f"COMMENT ON DATABASE {quoted} IS '{mark}'")
            return "created"
        finally:
            await admin.close()
        conn = await asyncpg.connect(url, timeout=10)
    try:
        mark = await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
        if mark == DATABASE_MARK:
            return "ours"
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'"
        )
        return f"foreign the quick start did not create it (it holds {tables} tables)"
    finally:
        await conn.close()


def _with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def redis_choice() -> str:
    import redis

    def claim(url: str) -> int:
        client = redis.Redis.from_url(url, socket_connect_timeout=10)
        try:
            return int(client.eval(CLAIM, 1, REDIS_KEY, REDIS_MARK))  # type: ignore[arg-type]
        finally:
            client.close()

    chosen = os.environ.get("QUICKSTART_REDIS_URL", "")
    if chosen:
        if claim(chosen):
            return chosen
        client = redis.Redis.from_url(chosen, socket_connect_timeout=10)
        try:
            size = client.dbsize()
        finally:
            client.close()
        number = urlsplit(chosen).path.strip("/") or "0"
        return f"refused Redis database {number} holds {size} keys that the quick start did not write"

    base = os.environ["REDIS_URL"]
    for db in REDIS_CANDIDATES:  # one that an earlier run marked comes first
        client = redis.Redis.from_url(_with_db(base, db), socket_connect_timeout=10)
        try:
            if client.get(REDIS_KEY) == REDIS_MARK.encode():
                return _with_db(base, db)
        except redis.ResponseError:  # the server has fewer databases
            continue
        finally:
            client.close()
    for db in REDIS_CANDIDATES:
        try:
            if claim(_with_db(base, db)):
                return _with_db(base, db)
        except redis.ResponseError:
            continue
    return "refused no Redis database among 1-15 is empty"


def main() -> None:
    what = sys.argv[1] if len(sys.argv) == 2 else ""
    if what == "database":
        print(asyncio.run(database()))
    elif what == "redis":
        print(redis_choice())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
