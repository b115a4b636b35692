"""Alembic environment: async (asyncpg), URL from DATABASE_URL, metadata from worker.store.models."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from worker.config.pooler import PoolerSetting, pooler_mode
from worker.config.settings import normalise_database_url
from worker.store.engine import for_pooler
from worker.store.models import metadata

config = context.config
target_metadata = metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: export it (postgresql://user@host:5432/db) and rerun.")
    return normalise_database_url(url)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def _pooler_setting() -> PoolerSetting:
    value = os.environ.get("TASKLINE_DATABASE_POOLER", "auto")
    if value not in ("auto", "none", "pgbouncer"):
        raise SystemExit(f"TASKLINE_DATABASE_POOLER is {value!r}: use auto, none or pgbouncer.")
    return value  # type: ignore[return-value]  # (checked just above)


async def run_migrations_online() -> None:
    url = _database_url()
    connect_args: dict[str, Any] = {}
    engine = create_async_engine(
        for_pooler(url, pooler_mode(url, _pooler_setting()), connect_args), connect_args=connect_args
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
