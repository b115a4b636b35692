"""The dead_letter table: record, list, show, and discard jobs that could not be applied.

Functions take the session and never commit; `record_dead_letter` is the one exception in
spirit: it is handed the session factory because it must retry on its own until the row is
written (a dead letter is never lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from worker.store.engine import Sessions
from worker.store.models import DeadLetter

__all__ = [
    "PAYLOAD_KEEP_BYTES",
    "REASON_MAX_CHARS",
    "DeadLetterFilter",
    "cap_reason",
    "delete_dead_letters",
    "discard_dead_letters",
    "find_dead_letters",
    "find_job_ids",
    "lock_dead_letters",
    "match_job_ids",
    "record_dead_letter",
    "upsert_dead_letter",
]

PAYLOAD_KEEP_BYTES: Final = 64 * 1024
"""Payloads above the size limit are kept truncated to this many bytes (their size is kept)."""


REASON_MAX_CHARS: Final = 2000
"""A dead letter's reason (and its log line's) is cut to this many characters: a reason quotes
what it refuses (a function name, a value), which a producer can make as long as a whole payload."""


def cap_reason(reason: str) -> str:
    """The reason, cut to REASON_MAX_CHARS with a note saying so."""
    if len(reason) <= REASON_MAX_CHARS:
        return reason
    note = f"… ({len(reason)} characters, cut)"
    return reason[: REASON_MAX_CHARS - len(note)] + note


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    function: str | None = None
    reason_contains: str | None = None
    older_than: datetime | None = None
    newer_than: datetime | None = None
    job_ids: Sequence[str] | None = None

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
        return clauses


async def upsert_dead_letter(
    session: AsyncSession,
    *,
    job_id: str,
    function: str | None,
    payload: bytes | None,
    reason: str,
    category: str,
    attempts: int,
    queue: str,
    max_payload_bytes: int,
    worker_id: str | None = None,
) -> None:
    """Insert the job's dead letter, or update it when a replayed job fails again."""
    size = len(payload) if payload is not None else 0
    kept = payload if payload is None or size <= max_payload_bytes else payload[:PAYLOAD_KEEP_BYTES]
    values = {
        "job_id": job_id,
        "function": function,
        "payload": kept,
        "payload_size": size,
        "reason": cap_reason(reason),
        "category": category,
        "attempts": max(1, attempts),
        "queue": queue,
        "worker_id": worker_id,
        "failed_at": sa.func.now(),
    }
    statement = insert(DeadLetter).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[DeadLetter.__table__.c.job_id],  # type: ignore[attr-defined]
        set_={key: statement.excluded[key] for key in values if key != "job_id"},
    )
    await session.exec(statement)


async def record_dead_letter(sessions: Sessions, *, tries: int = 5, **fields: Any) -> None:
    """Write a dead letter in its own transaction, retrying while the database is away.

    Raises the last error if every try fails; the caller then leaves the job in Redis to be
    tried again later, so the dead letter is not lost."""
    for attempt in range(1, tries + 1):
        try:
            async with sessions() as session, session.begin():
                await upsert_dead_letter(session, **fields)
            return
        except Exception:
            if attempt == tries:
                raise
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))


async def find_dead_letters(
    session: AsyncSession, where: DeadLetterFilter, *, limit: int | None = None
) -> list[DeadLetter]:
    query = select(DeadLetter).where(*where.where()).order_by(col(DeadLetter.failed_at).desc())
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
