"""The outbox's statements (`taskline_outbox`, in the producer's database), built from the table as
the producer package declares it (`taskline_producer.outbox.outbox_table`, mirroring its SQL file).

Every function takes a connection inside a transaction the caller owns (the relay's, or a tool's);
none commits. The relay (worker/relay/) locks what it works on with `FOR UPDATE SKIP LOCKED`, so
several relays share the table without taking the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection
from taskline_producer.outbox import outbox_table

__all__ = [
    "OutboxFigures",
    "ToCheck",
    "ToPublish",
    "claim_due_checks",
    "claim_for_publication",
    "confirm",
    "mark_invalid",
    "mark_published",
    "outbox_figures",
    "outbox_rows_of",
    "postpone_checks",
    "prune_confirmed",
]

T: Final = outbox_table
_IDS: Final = sa.bindparam("ids", type_=pg.ARRAY(sa.BigInteger))
_SECONDS: Final[sa.ColumnElement[Any]] = sa.literal_column("interval '1 second'")


@dataclass(frozen=True, slots=True)
class ToPublish:
    id: int
    function: str
    command: str
    """The command's JSON text, as PostgreSQL returns the jsonb."""


@dataclass(frozen=True, slots=True)
class ToCheck:
    id: int
    command_id: str | None
    function: str
    command: str
    age_s: float
    """Seconds since its last publication, by the database's clock."""


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    """The outbox now: rows waiting to be published, published and waiting for an outcome, refused."""

    unpublished: int = 0
    unconfirmed: int = 0
    invalid: int = 0
    oldest_unpublished_s: float = 0.0
    oldest_unconfirmed_s: float = 0.0

    @property
    def backlog(self) -> int:
        """Commands not yet confirmed (unpublished or unconfirmed)."""
        return self.unpublished + self.unconfirmed

    def as_dict(self) -> dict[str, Any]:
        return {
            "backlog": self.backlog,
            "unpublished": self.unpublished,
            "unconfirmed": self.unconfirmed,
            "invalid": self.invalid,
            "oldest_unpublished_s": round(self.oldest_unpublished_s, 3),
            "oldest_unconfirmed_s": round(self.oldest_unconfirmed_s, 3),
        }


_UNPUBLISHED = sa.and_(T.c.published_at.is_(None), T.c.invalid_reason.is_(None))
_UNCONFIRMED = sa.and_(T.c.published_at.is_not(None), T.c.confirmed_at.is_(None))

_NEXT_CHECK = sa.func.now() + sa.bindparam("first_check_s", type_=sa.Float) * _SECONDS

# Lock up to `limit` committed, unpublished rows (oldest first, rows another relay holds skipped)
# and record their publication in one statement: each row is written once per publication, and
# the transaction it runs in commits only once Redis took the jobs (else it rolls back).
# `id = ANY(array(SELECT ...))`, not `id IN (SELECT ...)`: the planner turns the IN into a hash
# semi-join over a sequential scan of the whole table, once per batch.
_CLAIM_FOR_PUBLICATION: Final = (
    sa.update(T)
    .where(
        T.c.id
        == sa.any_(
            sa.func.array(
                sa.select(T.c.id)
                .where(_UNPUBLISHED)
                .order_by(T.c.id)
                .limit(sa.bindparam("limit"))
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
        )
    )
    .values(published_at=sa.func.now(), publications=T.c.publications + 1, next_check_at=_NEXT_CHECK)
    .returning(T.c.id, T.c.function, sa.cast(T.c.command, sa.Text))
)

_CLAIM_DUE: Final = (
    sa.select(
        T.c.id,
        T.c.command_id,
        T.c.function,
        sa.cast(T.c.command, sa.Text),
        sa.func.extract("epoch", sa.func.now() - T.c.published_at),
    )
    .where(_UNCONFIRMED, T.c.next_check_at <= sa.func.now())
    .order_by(T.c.next_check_at)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)

_MARK_PUBLISHED: Final = (
    sa.update(T)
    .where(T.c.id == sa.any_(_IDS))
    .values(
        published_at=sa.func.now(),
        publications=T.c.publications + 1,
        next_check_at=_NEXT_CHECK,
    )
)

# A refused row is kept unpublished (its claim above counted a publication that did not happen).
_MARK_INVALID: Final = (
    sa.update(T)
    .where(T.c.id == sa.bindparam("row_id"))
    .values(
        invalid_reason=sa.bindparam("reason"),
        published_at=None,
        next_check_at=None,
        publications=sa.func.greatest(T.c.publications - 1, 0),
    )
)

_CONFIRM: Final = (
    sa.update(T)
    .where(T.c.id == sa.any_(_IDS))
    .values(confirmed_at=sa.func.now(), outcome=sa.bindparam("outcome"), next_check_at=None)
)

# The next check of a command still queued or running: half its age since publication, at least
# `min_s`, at most `max_s` (a long backlog is asked about less and less often).
_POSTPONE: Final = (
    sa.update(T)
    .where(T.c.id == sa.any_(_IDS))
    .values(
        next_check_at=sa.func.now()
        + sa.func.least(
            sa.func.greatest(
                sa.func.extract("epoch", sa.func.now() - T.c.published_at) / 2,
                sa.bindparam("min_s", type_=sa.Float),
            ),
            sa.bindparam("max_s", type_=sa.Float),
        )
        * _SECONDS
    )
)

_PRUNE: Final = sa.delete(T).where(  # ANY(array(...)): see _CLAIM_FOR_PUBLICATION
    T.c.id
    == sa.any_(
        sa.func.array(
            sa.select(T.c.id)
            .where(
                T.c.confirmed_at.is_not(None),
                T.c.confirmed_at < sa.func.now() - sa.bindparam("retention_s", type_=sa.Float) * _SECONDS,
            )
            .limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
)

_EPOCH_AGE = sa.func.extract("epoch", sa.func.now() - sa.func.min(T.c.added_at))
_FIGURES_UNPUBLISHED: Final = sa.select(sa.func.count(), _EPOCH_AGE).where(_UNPUBLISHED)
_FIGURES_UNCONFIRMED: Final = sa.select(sa.func.count(), _EPOCH_AGE).where(_UNCONFIRMED)
_FIGURES_INVALID: Final = sa.select(sa.func.count()).where(T.c.invalid_reason.is_not(None))


async def claim_for_publication(conn: AsyncConnection, limit: int, first_check_s: float) -> list[ToPublish]:
    """Lock up to `limit` committed, unpublished, valid-so-far rows, oldest first (rows another
    relay holds are skipped), recorded as published (outcome asked after `first_check_s`): the
    caller publishes them before its transaction commits, and marks the ones it refuses invalid."""
    rows = await conn.execute(_CLAIM_FOR_PUBLICATION, {"limit": limit, "first_check_s": first_check_s})
    return sorted((ToPublish(row[0], row[1], row[2]) for row in rows), key=lambda row: row.id)


async def mark_published(conn: AsyncConnection, ids: Sequence[int], first_check_s: float) -> None:
    """Record a publication of `ids` (first or again); their outcome is asked after `first_check_s`."""
    if ids:
        await conn.execute(_MARK_PUBLISHED, {"ids": list(ids), "first_check_s": first_check_s})


async def mark_invalid(conn: AsyncConnection, refused: Sequence[tuple[int, str]]) -> None:
    """Keep refused rows with the contract's reason; they are never published."""
    if refused:
        await conn.execute(_MARK_INVALID, [{"row_id": row_id, "reason": reason} for row_id, reason in refused])


async def claim_due_checks(conn: AsyncConnection, limit: int) -> list[ToCheck]:
    """Lock up to `limit` published, unconfirmed rows whose outcome is due to be asked."""
    rows = await conn.execute(_CLAIM_DUE, {"limit": limit})
    return [ToCheck(row[0], row[1], row[2], row[3], float(row[4])) for row in rows]


async def confirm(conn: AsyncConnection, ids: Sequence[int], outcome: str) -> None:
    """Record the final outcome (applied, duplicate, dead_letter) of `ids`."""
    if ids:
        await conn.execute(_CONFIRM, {"ids": list(ids), "outcome": outcome})


async def postpone_checks(conn: AsyncConnection, ids: Sequence[int], min_s: float, max_s: float) -> None:
    """Ask again later about commands still queued or running (see `_POSTPONE`)."""
    if ids:
        await conn.execute(_POSTPONE, {"ids": list(ids), "min_s": min_s, "max_s": max_s})


async def prune_confirmed(conn: AsyncConnection, retention_s: float, limit: int) -> int:
    """Delete up to `limit` rows confirmed more than `retention_s` ago; how many went."""
    result = await conn.execute(_PRUNE, {"retention_s": retention_s, "limit": limit})
    return int(result.rowcount or 0)


async def outbox_figures(conn: AsyncConnection) -> OutboxFigures:
    """Counts and ages of the outbox (three index scans over the partial indexes)."""
    unpublished, unpublished_age = (await conn.execute(_FIGURES_UNPUBLISHED)).one()
    unconfirmed, unconfirmed_age = (await conn.execute(_FIGURES_UNCONFIRMED)).one()
    invalid = (await conn.execute(_FIGURES_INVALID)).scalar_one()
    return OutboxFigures(
        int(unpublished), int(unconfirmed), int(invalid), float(unpublished_age or 0), float(unconfirmed_age or 0)
    )


async def outbox_rows_of(conn: AsyncConnection, command_id: str) -> list[dict[str, Any]]:
    """The outbox rows carrying `command_id` (usually one), for `taskline trace`."""
    columns = [c for c in T.c if c.name != "command"]
    result = await conn.execute(sa.select(*columns).where(T.c.command_id == command_id).order_by(T.c.id))
    return [dict(row) for row in result.mappings()]
