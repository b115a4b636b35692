"""Recording a job that could not be applied in the dead_letter table.

`upsert_dead_letter` takes the session and never commits; `record_dead_letter` is the one
exception in spirit: it is handed the session factory because it must retry on its own until
the row is written (a dead letter is never lost). What the operations tools do with the table
(find, match, discard, delete) is in `worker.store.dead_letter_queries`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from worker.store.engine import Sessions
from worker.store.models import DeadLetter

__all__ = ["PAYLOAD_KEEP_BYTES", "REASON_MAX_CHARS", "cap_reason", "record_dead_letter", "upsert_dead_letter"]

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
    signed_by: str | None = None,
) -> None:
    """Insert the job's dead letter, or update it when a replayed job fails again. `signed_by`:
    the key id the job was signed with, or claims (a refused signature names the key it claims)."""
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
        "signed_by": signed_by,
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
