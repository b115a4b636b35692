"""The transactional outbox, for Python services on SQLAlchemy (`pip install taskline-producer[outbox]`).

A service adds commands to its own session, in the transaction that makes its own writes; they
are published to Redis by `taskline relay` only once that transaction has committed, and never
if it rolls back:

    with Session(engine) as session, session.begin():
        session.add(order)
        add_to_outbox(session, CreateTask(...))

`add_to_outbox` is the same call for a `Session` and an `AsyncSession` (it only adds rows to the
session, which writes them at its next flush or commit), for one command or many.

The table's one home is `taskline_producer/sql/outbox.sql` (`outbox_sql()`), which a service runs
once or includes in its own migrations (`taskline_producer.outbox_migration`); `outbox_table`
below mirrors it for SQLAlchemy, and a test keeps the two equal. Services in other languages
insert with the plain SQL of docs/outbox.md.

This module imports SQLAlchemy (the `outbox` extra) and nothing of the worker; `import
taskline_producer` itself never imports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import registry

from taskline_producer.contract import Command
from taskline_producer.wire import wire_argument

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["OUTBOX_TABLE", "OutboxRow", "add_to_outbox", "outbox_metadata", "outbox_sql", "outbox_table"]

OUTBOX_TABLE: Final = "taskline_outbox"

outbox_metadata = sa.MetaData()
"""The outbox's own metadata: not the service's, so its autogenerate does not claim the table."""

outbox_table = sa.Table(
    OUTBOX_TABLE,
    outbox_metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("function", sa.Text, nullable=False),
    sa.Column("command", pg.JSONB, nullable=False),
    sa.Column("command_id", sa.Text, sa.Computed("command ->> 'command_id'", persisted=True)),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("publications", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("next_check_at", sa.DateTime(timezone=True)),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.Text),
    sa.Column("invalid_reason", sa.Text),
)
"""`taskline_outbox` as outbox.sql creates it (the SQL file is the schema's home)."""


class OutboxRow:
    """One row of the outbox as the service adds it: the job function and the command's JSON."""

    id: int | None
    function: str
    command: dict[str, Any]
    command_id: str | None
    added_at: datetime | None

    def __init__(self, function: str, command: dict[str, Any]) -> None:
        self.function = function
        self.command = command

    def __repr__(self) -> str:
        return f"<OutboxRow {self.function} {self.command.get('command_id')}>"


_mapper_registry = registry(metadata=outbox_metadata)
_mapper_registry.map_imperatively(OutboxRow, outbox_table)


def add_to_outbox(session: Session | AsyncSession, commands: Command | Iterable[Command]) -> list[OutboxRow]:
    """Add one command or many (already validated: `CreateTask`, `UpdateTask`, `CompleteTask`)
    to the outbox, in `session`'s transaction; returns the rows added.

    Nothing is written until the session flushes or commits, and nothing is published unless the
    transaction commits. Each command keeps its `command_id`, which deduplicates it end to end:
    adding the same command twice publishes it twice and applies it once."""
    batch = [commands] if isinstance(commands, Command.__args__) else list(commands)  # type: ignore[attr-defined]
    rows = []
    for command in batch:
        if not isinstance(command, Command.__args__):  # type: ignore[attr-defined]
            raise TypeError(f"add_to_outbox takes CreateTask, UpdateTask or CompleteTask commands, got {command!r}")
        rows.append(OutboxRow(command.function, wire_argument(command)))
    session.add_all(rows)
    return rows


def outbox_sql() -> str:
    """The text of `taskline_producer/sql/outbox.sql`: the table and its indexes."""
    return files("taskline_producer").joinpath("sql/outbox.sql").read_text(encoding="utf-8")
