"""The tables. Persistence only: rows are built from already-validated commands.

`user` and `task` are public (other services read them); `processed_command` and
`dead_letter` are taskline's own bookkeeping. Every timestamp is `timestamptz`.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

__all__ = ["DeadLetter", "OperatorAction", "ProcessedCommand", "Task", "User", "metadata", "table_of"]

metadata = SQLModel.metadata
metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _timestamptz(*, nullable: bool = False, server_default: bool = False) -> sa.Column[datetime]:
    return sa.Column(
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if server_default else None,
    )


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model (SQLModel leaves `__table__` untyped): what statements are
    built from, so that a renamed column fails where the statement is built."""
    table = model.__table__  # type: ignore[attr-defined]
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table model (declare it with table=True)")
    return table


class User(SQLModel, table=True):
    """Filled by another service; the worker only reads it (through the foreign key)."""

    __tablename__ = "user"

    id: int = Field(primary_key=True)
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False, unique=True))
    hashed_password: str = Field(sa_column=sa.Column(sa.String(), nullable=False))
    name: str | None = Field(default=None, sa_column=sa.Column(sa.String(), nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(server_default=True))


class Task(SQLModel, table=True):
    """One task. `created_at`/`updated_at` are when taskline wrote the row.

    The `*_issued_at`/`*_command_id` pairs stamp which command last set `title` and
    `description`; they make the final state independent of processing order (the newest
    command by `(issued_at, command_id)` wins each field)."""

    __tablename__ = "task"
    __table_args__ = (
        sa.Index("ix_task_user_id_created_at", "user_id", sa.text("created_at DESC")),
        sa.Index(
            "ix_task_completed_at_completed",
            "completed_at",
            postgresql_where=sa.text("completed"),
        ),
    )

    id: UUID = Field(sa_column=sa.Column(pg.UUID(as_uuid=True), primary_key=True))
    user_id: int = Field(
        # Indexed by ix_task_user_id_created_at, whose leading column it is.
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("user.id"), nullable=False)
    )
    title: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    description: str | None = Field(default=None, sa_column=sa.Column(sa.String(1000), nullable=True))
    completed: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    completed_at: datetime | None = Field(default=None, sa_column=_timestamptz(nullable=True))
    created_at: datetime = Field(sa_column=_timestamptz(server_default=True))
    updated_at: datetime = Field(sa_column=_timestamptz(server_default=True))
    title_issued_at: datetime = Field(sa_column=_timestamptz())
    title_command_id: UUID = Field(sa_column=sa.Column(pg.UUID(as_uuid=True), nullable=False))
    description_issued_at: datetime = Field(sa_column=_timestamptz())
    description_command_id: UUID = Field(sa_column=sa.Column(pg.UUID(as_uuid=True), nullable=False))


class ProcessedCommand(SQLModel, table=True):
    """One row per command that took effect: a redelivered command finds its row and is a no-op.

    Written in the same transaction as the command's effect, with the worker that applied it and
    the transaction's id (the commands that share `processed_at` and `transaction_id` committed
    together); `duplicates` counts the later deliveries that found this row; `fingerprint` tells
    a redelivery from another command under the same id."""

    __tablename__ = "processed_command"

    command_id: UUID = Field(sa_column=sa.Column(pg.UUID(as_uuid=True), primary_key=True))
    function: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    task_id: UUID = Field(sa_column=sa.Column(pg.UUID(as_uuid=True), nullable=False))
    issued_at: datetime = Field(sa_column=_timestamptz())
    processed_at: datetime = Field(sa_column=_timestamptz(server_default=True, nullable=False))
    worker_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    transaction_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    duplicates: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default=sa.text("0")))
    fingerprint: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    """SHA-256 of the command (its function and fields): a later delivery under the same command_id
    with another fingerprint is another command reusing the id, not a redelivery. NULL on rows
    recorded before it was added (taken as matching)."""
    signed_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    """The id of the key that signed the command's job (None: unsigned)."""


sa.Index("ix_processed_command_processed_at", table_of(ProcessedCommand).c.processed_at)
sa.Index("ix_processed_command_task_id", table_of(ProcessedCommand).c.task_id)


class DeadLetter(SQLModel, table=True):
    """A job that could not be applied, with the reason, kept until replayed or discarded."""

    __tablename__ = "dead_letter"

    job_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    function: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    payload: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    payload_size: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    category: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    queue: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    failed_at: datetime = Field(sa_column=_timestamptz(server_default=True))
    worker_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    """The worker that wrote it (None: written by an operations tool, or before taskline recorded it)."""
    signed_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    """The id of the key the job was signed with, or claims to be (None: unsigned)."""


sa.Index("ix_dead_letter_failed_at", table_of(DeadLetter).c.failed_at)


class OperatorAction(SQLModel, table=True):
    """One change an operator made to the queue or the dead letters (replay, discard, delete,
    run-now, pause, resume), from the page or the command line: who, when, what."""

    __tablename__ = "operator_action"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    at: datetime = Field(sa_column=_timestamptz(server_default=True))
    who: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    """The page's signed-in user (`web:<user>`), or the OS user of a command line (`cli:<user>`)."""
    action: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    queue: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    target: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    """The job id acted on (None for a pause or resume of the whole queue)."""
    detail: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False, server_default=""))
    """What came of it, in words ("replayed", "not replayed: …", "removed", …)."""


sa.Index("ix_operator_action_at", table_of(OperatorAction).c.at)
