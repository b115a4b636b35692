"""The database engine and session factory, built at worker startup and disposed at shutdown."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from worker.config.pooler import PoolerMode
from worker.config.settings import Settings

__all__ = ["Sessions", "for_pooler", "make_engine", "make_outbox_engine", "make_sessions", "make_tool_engine"]

Sessions = async_sessionmaker[AsyncSession]


_BROKEN_CONNECTION_ERRORS = (
    asyncpg.InterfaceError,  # e.g. "another operation is in progress" after a terminated backend
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    ConnectionError,
    OSError,
)


def _discard_broken_connections(context: Any) -> None:
    """Treat any error that leaves the connection unusable as a disconnect, so the pool drops
    the connection instead of handing it to the next command."""
    original = context.original_exception
    if isinstance(original, _BROKEN_CONNECTION_ERRORS) or isinstance(
        getattr(original, "__cause__", None), _BROKEN_CONNECTION_ERRORS
    ):
        context.is_disconnect = True


def _unnamed_statement() -> str:
    """SQLAlchemy's name for each statement it prepares: empty, asyncpg's unnamed statement."""
    return ""


def for_pooler(url: str, mode: PoolerMode, connect_args: dict[str, Any]) -> URL:
    """`url` (and `connect_args`, updated in place) for what stands between us and PostgreSQL:
    behind PgBouncer's transaction pooling, unnamed statements and no statement cache on either
    side (worker/config/pooler.py says why); directly, asyncpg's cache of prepared statements."""
    parsed = make_url(url)
    if mode == "none":
        return parsed
    connect_args["statement_cache_size"] = 0
    connect_args["prepared_statement_name_func"] = _unnamed_statement
    return parsed.update_query_dict({"prepared_statement_cache_size": "0"})


def make_engine(settings: Settings) -> AsyncEngine:
    connect_args: dict[str, Any] = {
        "server_settings": {"application_name": "taskline-worker"},
        "command_timeout": settings.job_timeout,
    }
    engine = create_async_engine(
        for_pooler(settings.database_url, settings.database_pooler_mode, connect_args),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=False,  # a dead connection fails the command, which is retried
        pool_timeout=settings.job_timeout,
        hide_parameters=True,  # an error's text (and a logged traceback) never carries a payload
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "handle_error", _discard_broken_connections)
    return engine


def make_tool_engine(
    settings: Settings,
    application_name: str,
    *,
    pool_size: int = 1,
    max_overflow: int = 0,
    command_timeout: float | None = None,
) -> AsyncEngine:
    """A small engine for an operations tool (status, trace, the metrics page, the web page):
    a few connections, a 5 s connect timeout, and statements that never carry their parameters
    into an error's text."""
    connect_args: dict[str, Any] = {"server_settings": {"application_name": application_name}, "timeout": 5}
    if command_timeout is not None:
        connect_args["command_timeout"] = command_timeout
    return create_async_engine(
        for_pooler(settings.database_url, settings.database_pooler_mode, connect_args),
        pool_size=pool_size,
        max_overflow=max_overflow,
        hide_parameters=True,
        connect_args=connect_args,
    )


def make_outbox_engine(
    settings: Settings, application_name: str = "taskline-relay", *, pool_size: int = 2
) -> AsyncEngine:
    """The engine of the outbox's database (TASKLINE_OUTBOX_DATABASE_URL, else DATABASE_URL), for
    the relay: `pool_size` connections, for its steps (one per batch in hand) and its heartbeat's
    figures; a connection that broke in an outage is dropped from the pool rather than reused."""
    connect_args: dict[str, Any] = {
        "server_settings": {"application_name": application_name},
        "timeout": 5,
        "command_timeout": 30,
    }
    engine = create_async_engine(
        for_pooler(settings.outbox_url, settings.outbox_pooler_mode, connect_args),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_timeout=30,
        hide_parameters=True,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "handle_error", _discard_broken_connections)
    return engine


def make_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, autoflush=False)
