"""The operator_action table: record what an operator did, and read the newest records back.

Functions take the session and never commit: a record is written in the caller's transaction
(for a discard, the same one that deletes the rows), so what is recorded is what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from worker.store.models import OperatorAction, table_of

__all__ = ["ACTIONS", "find_actions", "record_actions"]

ACTIONS: Final = ("replay", "discard", "delete", "run-now", "pause", "resume")


async def record_actions(
    session: AsyncSession, *, who: str, action: str, queue: str, targets: Sequence[tuple[str | None, str]]
) -> None:
    """One row per (target, detail): `target` the job id (None for the whole queue)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown operator action {action!r}: one of {', '.join(ACTIONS)}")
    if not targets:
        return
    rows = [{"who": who, "action": action, "queue": queue, "target": t, "detail": d} for t, d in targets]
    await session.exec(sa.insert(table_of(OperatorAction)).values(rows))


async def find_actions(
    session: AsyncSession,
    *,
    queue: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[OperatorAction]:
    """The newest records first, one page of them."""
    query = select(OperatorAction)
    if queue is not None:
        query = query.where(col(OperatorAction.queue) == queue)
    if action:
        query = query.where(col(OperatorAction.action) == action)
    if target:
        query = query.where(col(OperatorAction.target) == target)
    query = query.order_by(col(OperatorAction.at).desc(), col(OperatorAction.id).desc()).offset(offset).limit(limit)
    return list((await session.exec(query)).all())
