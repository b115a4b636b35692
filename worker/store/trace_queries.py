"""What `taskline trace` reads from PostgreSQL: a command's record, the commands committed in the
same transaction, a dead letter, a task's row, the commands that touched a task, and the dead
letters whose payload names it. Every query is built from the table models and takes the
connection; rows come back as mappings keyed by column name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.store.bytes_search import BytesPosition
from worker.store.models import DeadLetter, ProcessedCommand, Task, table_of

__all__ = [
    "DEAD_LETTERS_NAMING_SHOWN",
    "dead_letter",
    "dead_letters_naming",
    "ids_starting_with",
    "processed_command",
    "task_commands",
    "task_row",
    "transaction_commands",
    "uuid_range",
]

DEAD_LETTERS_NAMING_SHOWN: Final = 100
"""At most this many dead letters naming a task are read, oldest first."""

_COMMANDS: Final = table_of(ProcessedCommand)
_LETTERS: Final = table_of(DeadLetter)
_TASKS: Final = table_of(Task)


async def _first(conn: AsyncConnection, query: sa.Select[Any]) -> sa.RowMapping | None:
    row: sa.RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def _all(conn: AsyncConnection, query: sa.Select[Any]) -> Sequence[sa.RowMapping]:
    rows: Sequence[sa.RowMapping] = (await conn.execute(query)).mappings().all()
    return rows


async def processed_command(conn: AsyncConnection, command_id: UUID) -> sa.RowMapping | None:
    """The command's processed_command row (every column), or None."""
    return await _first(conn, sa.select(_COMMANDS).where(_COMMANDS.c.command_id == command_id))


async def transaction_commands(
    conn: AsyncConnection, processed_at: datetime, transaction_id: int
) -> Sequence[sa.RowMapping]:
    """command_id, function, task_id of every command committed in that transaction, by id."""
    c = _COMMANDS.c
    query = (
        sa.select(c.command_id, c.function, c.task_id)
        .where(c.processed_at == processed_at, c.transaction_id == transaction_id)
        .order_by(c.command_id)
    )
    return await _all(conn, query)


async def dead_letter(conn: AsyncConnection, job_id: str) -> sa.RowMapping | None:
    """The job's dead letter (every column but the queue), or None."""
    d = _LETTERS.c
    shown = (
        d.job_id,
        d.function,
        d.reason,
        d.category,
        d.attempts,
        d.failed_at,
        d.worker_id,
        d.signed_by,
        d.payload_size,
        d.payload,
    )
    return await _first(conn, sa.select(*shown).where(d.job_id == job_id))


async def task_row(conn: AsyncConnection, task_id: UUID) -> sa.RowMapping | None:
    """The task's row (every column), or None."""
    return await _first(conn, sa.select(_TASKS).where(_TASKS.c.id == task_id))


async def task_commands(conn: AsyncConnection, task_id: UUID) -> Sequence[sa.RowMapping]:
    """The processed_command rows of the task (every column but task_id), in issued_at order."""
    c = _COMMANDS.c
    shown = (
        c.command_id,
        c.function,
        c.issued_at,
        c.processed_at,
        c.worker_id,
        c.transaction_id,
        c.duplicates,
        c.signed_by,
    )
    return await _all(conn, sa.select(*shown).where(c.task_id == task_id).order_by(c.issued_at, c.command_id))


async def dead_letters_naming(conn: AsyncConnection, task_id: UUID) -> Sequence[sa.RowMapping]:
    """job_id, function, reason, category, failed_at of the dead letters whose payload holds the
    task id's text, oldest first (a scan of dead_letter, which is small and kept briefly)."""
    d = _LETTERS.c
    needle = sa.func.convert_to(str(task_id), sa.literal_column("'UTF8'"))
    query = (
        sa.select(d.job_id, d.function, d.reason, d.category, d.failed_at)
        .where(BytesPosition(needle, d.payload) > 0)
        .order_by(d.failed_at)
        .limit(DEAD_LETTERS_NAMING_SHOWN)
    )
    return await _all(conn, query)


def uuid_range(prefix: str) -> tuple[UUID, UUID] | None:
    """The lowest and highest UUID whose text starts with `prefix`, or None when no UUID can.
    PostgreSQL orders UUIDs by their bytes, as their hex digits read, so a prefix is a range of
    the primary key's index."""
    digits = prefix.replace("-", "").lower()
    layout = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    if len(prefix) > len(layout) or any(
        (want == "-") != (got == "-") for want, got in zip(layout, prefix, strict=False)
    ):
        return None
    if not digits or any(d not in "0123456789abcdef" for d in digits):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


async def ids_starting_with(conn: AsyncConnection, prefix: str, *, limit: int) -> list[str]:
    """Up to `limit` command ids, task ids and dead letters' job ids starting with `prefix`,
    sorted; each lookup is a range or prefix of an index."""
    found: set[str] = set()
    bounds = uuid_range(prefix)
    if bounds is not None:
        low, high = bounds
        for column in (_COMMANDS.c.command_id, _TASKS.c.id):
            query = sa.select(column).where(column.between(low, high)).order_by(column).limit(limit)
            found.update(str(value) for value in (await conn.execute(query)).scalars())
    job_id = _LETTERS.c.job_id
    query = sa.select(job_id).where(job_id.startswith(prefix, autoescape=True)).order_by(job_id).limit(limit)
    found.update(str(value) for value in (await conn.execute(query)).scalars())
    return sorted(found)[:limit]
