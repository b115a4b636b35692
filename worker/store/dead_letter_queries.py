"""The dead_letter table as the operations tools read and change it: find, match, lock, group,
discard and delete. (Recording a dead letter is the pipeline's: `worker.pipeline.dead_letters`.)

Functions take the session or connection and never commit; every query is built from the
`DeadLetter` model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INTERVAL, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from worker.store.bytes_search import holds_text
from worker.store.models import DeadLetter, table_of

__all__ = [
    "DEAD_LETTER_GROUPS_SINCE",
    "RECENT_GROUPS",
    "DeadLetterFilter",
    "delete_dead_letters",
    "discard_dead_letters",
    "find_dead_letters",
    "find_job_ids",
    "group_recent_dead_letters",
    "lock_dead_letters",
    "match_job_ids",
]

DEAD_LETTER_GROUPS_SINCE: Final = "24 hours"
"""Dead letters are grouped over this recent stretch (an index range scan of failed_at)."""

_GROUPS_SHOWN: Final = 50


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    function: str | None = None
    reason_contains: str | None = None
    older_than: datetime | None = None
    newer_than: datetime | None = None
    job_ids: Sequence[str] | None = None
    user_id: int | None = None
    """Dead letters whose payload names this user (`"user_id": N` in its JSON)."""
    task_id: str | None = None
    """Dead letters whose payload holds this task id's text."""

    def where(self) -> list[Any]:
        clauses: list[Any] = []
        if self.function is not None:
            clauses.append(col(DeadLetter.function) == self.function)
        if self.reason_contains:
            clauses.append(col(DeadLetter.reason).icontains(self.reason_contains, autoescape=True))
        if self.older_than is not None:
            clauses.append(col(DeadLetter.failed_at) < self.older_than)
        if self.newer_than is not None:
            clauses.append(col(DeadLetter.failed_at) >= self.newer_than)
        if self.job_ids is not None:
            clauses.append(col(DeadLetter.job_id).in_(list(self.job_ids)))
        if self.user_id is not None:
            user = f'"user_id":{self.user_id}'
            spaced = f'"user_id": {self.user_id}'
            forms = (user + ",", user + "}", spaced + ",", spaced + "}")
            clauses.append(holds_text(col(DeadLetter.payload), *forms))
        if self.task_id:
            clauses.append(holds_text(col(DeadLetter.payload), self.task_id))
        return clauses


async def find_dead_letters(
    session: AsyncSession, where: DeadLetterFilter, *, limit: int | None = None, offset: int = 0
) -> list[DeadLetter]:
    """The newest first; one page of `limit` from `offset` (a keyset would be faster deep down,
    but an operator pages a few times, and the table is purged)."""
    query = (
        select(DeadLetter)
        .where(*where.where())
        .order_by(col(DeadLetter.failed_at).desc(), col(DeadLetter.job_id))
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return list((await session.exec(query)).all())


async def find_job_ids(session: AsyncSession, where: DeadLetterFilter) -> list[str]:
    """The job ids of the matching dead letters, oldest first (a fixed list to work through)."""
    query = select(DeadLetter.job_id).where(*where.where()).order_by(col(DeadLetter.failed_at), col(DeadLetter.job_id))
    return [str(job_id) for job_id in (await session.exec(query)).all()]


async def lock_dead_letters(session: AsyncSession, job_ids: Sequence[str], where: DeadLetterFilter) -> list[DeadLetter]:
    """The dead letters of these job ids that still match, locked (FOR UPDATE) until the
    transaction ends: a worker writing one of them waits until then (worker/tools/replay.py)."""
    query = (
        select(DeadLetter)
        .where(col(DeadLetter.job_id).in_(list(job_ids)), *where.where())
        .order_by(col(DeadLetter.job_id))
        .with_for_update()
    )
    return list((await session.exec(query)).all())


async def match_job_ids(session: AsyncSession, prefix: str, *, limit: int = 10) -> list[str]:
    """The job id equal to `prefix` if there is one, else up to `limit` job ids starting with it."""
    exact = await session.exec(select(DeadLetter.job_id).where(col(DeadLetter.job_id) == prefix))
    if exact.first() is not None:
        return [prefix]
    query = (
        select(DeadLetter.job_id)
        .where(col(DeadLetter.job_id).startswith(prefix, autoescape=True))
        .order_by(col(DeadLetter.job_id))
        .limit(limit)
    )
    return [str(job_id) for job_id in (await session.exec(query)).all()]


async def delete_dead_letters(session: AsyncSession, job_ids: Sequence[str]) -> int:
    result = await session.exec(sa.delete(DeadLetter).where(col(DeadLetter.job_id).in_(list(job_ids))))
    return int(result.rowcount or 0)


async def discard_dead_letters(session: AsyncSession, where: DeadLetterFilter) -> list[str]:
    """Delete the matching dead letters in one statement; returns their job ids."""
    statement = sa.delete(DeadLetter).where(*where.where()).returning(col(DeadLetter.job_id))
    return sorted(str(job_id) for job_id in (await session.exec(statement)).scalars())


def _recent_groups() -> sa.Select[Any]:
    d = table_of(DeadLetter).c
    function = sa.func.coalesce(d.function, sa.literal_column("'?'")).label("function")
    count = sa.func.count().label("count")
    latest_reason = sa.func.array_agg(aggregate_order_by(d.reason, d.failed_at.desc()))[1]
    return (
        sa.select(
            function, d.category, count, sa.func.max(d.failed_at).label("last_at"), latest_reason.label("latest_reason")
        )
        .where(d.failed_at > sa.func.now() - sa.literal_column(f"interval '{DEAD_LETTER_GROUPS_SINCE}'", INTERVAL))
        .group_by(function, d.category)
        .order_by(count.desc(), function, d.category)
        .limit(_GROUPS_SHOWN)
    )


RECENT_GROUPS: Final = _recent_groups()
"""The query of `group_recent_dead_letters`."""


async def group_recent_dead_letters(conn: AsyncConnection) -> Sequence[sa.RowMapping]:
    """The dead letters of the last DEAD_LETTER_GROUPS_SINCE by function and kind, the largest
    groups first (at most 50): function ('?' when unknown), category, count, last_at, latest_reason."""
    rows: Sequence[sa.RowMapping] = (await conn.execute(RECENT_GROUPS)).mappings().all()
    return rows
