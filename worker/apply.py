"""Apply validated commands to the database inside the caller's transaction.

`apply_commands` takes any mix of commands (one, or a thousand) and returns one `Outcome` per
command. It never opens a session and never commits: the caller owns the transaction, so the
processed-command records and the effects commit or roll back together.

Order independence: every task field is a last-writer-wins register stamped with the
`(issued_at, command_id)` of the command that set it, and a completion keeps the earliest
`issued_at`. Applying any subset of commands in any order, any number of times, therefore ends
in the state of applying them once each in `issued_at` order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause
from sqlmodel.ext.asyncio.session import AsyncSession

from producers.contract import Command, CompleteTask, CreateTask, UpdateTask
from worker import statements

__all__ = ["Outcome", "apply_commands"]


class Outcome(enum.Enum):
    APPLIED = "applied"
    """Took effect (possibly changing no value, when newer commands had already set them)."""
    DUPLICATE = "duplicate"
    """Already processed before: a no-op."""
    CONFLICT = "conflict"
    """create_task for a task id that another command already created."""
    FORBIDDEN = "forbidden"
    """The task belongs to another user."""
    TASK_MISSING = "task_missing"
    """update/complete for a task that does not exist (yet)."""
    USER_MISSING = "user_missing"
    """create_task for a user that does not exist (yet)."""

    @property
    def took_effect(self) -> bool:
        return self in (Outcome.APPLIED, Outcome.DUPLICATE)


@dataclass(slots=True)
class _Change:
    """All updates/completions of one (task, user) in a batch, merged last-writer-wins."""

    task_id: UUID
    user_id: int
    title: UpdateTask | None = None
    description: UpdateTask | None = None
    completed_at: datetime | None = None

    def absorb(self, command: UpdateTask | CompleteTask) -> None:
        stamp = (command.issued_at, command.command_id)
        if isinstance(command, CompleteTask):
            if self.completed_at is None or command.issued_at < self.completed_at:
                self.completed_at = command.issued_at
            return
        if command.sets_title and (self.title is None or stamp > (self.title.issued_at, self.title.command_id)):
            self.title = command
        if command.sets_description and (
            self.description is None or stamp > (self.description.issued_at, self.description.command_id)
        ):
            self.description = command


async def apply_commands(session: AsyncSession, commands: Sequence[Command]) -> list[Outcome]:
    """Apply `commands` in the session's open transaction; one outcome per command, in order."""
    outcomes: dict[UUID, Outcome] = {}
    unique: dict[UUID, Command] = {}
    for command in commands:
        unique.setdefault(command.command_id, command)

    fresh = await _record(session, list(unique.values()))
    for command_id in unique:
        if command_id not in fresh:
            outcomes[command_id] = Outcome.DUPLICATE

    pending = [unique[c] for c in unique if c in fresh]
    creates = [c for c in pending if isinstance(c, CreateTask)]
    changes = [c for c in pending if isinstance(c, (UpdateTask, CompleteTask))]
    if creates:
        outcomes.update(await _create(session, creates))
    if changes:
        outcomes.update(await _change(session, changes))

    refused = [command_id for command_id, outcome in outcomes.items() if not outcome.took_effect]
    if refused:
        await _run(session, statements.FORGET_COMMANDS, {"command_ids": refused})

    result = []
    seen: set[UUID] = set()
    for command in commands:
        # A command repeated inside one batch takes effect once; its repeats are duplicates. A
        # refused or waiting command's repeats share its outcome.
        outcome = outcomes[command.command_id]
        repeat = command.command_id in seen
        seen.add(command.command_id)
        result.append(Outcome.DUPLICATE if repeat and outcome.took_effect else outcome)
    return result


async def _record(session: AsyncSession, commands: list[Command]) -> set[UUID]:
    rows = await _run(
        session,
        statements.RECORD_COMMANDS,
        {
            "command_ids": [c.command_id for c in commands],
            "functions": [c.function for c in commands],
            "task_ids": [c.task_id for c in commands],
            "issued_ats": [c.issued_at for c in commands],
        },
    )
    return {row[0] for row in rows}


async def _create(session: AsyncSession, creates: list[CreateTask]) -> dict[UUID, Outcome]:
    outcomes: dict[UUID, Outcome] = {}
    remaining = creates
    while remaining:
        # One create per task id per statement, so the statement decides who won each id.
        round_: dict[UUID, CreateTask] = {}
        later: list[CreateTask] = []
        for create in remaining:
            if create.task_id in round_:
                later.append(create)
            else:
                round_[create.task_id] = create
        rows = await _run(
            session,
            statements.INSERT_TASKS,
            {
                "task_ids": [c.task_id for c in round_.values()],
                "user_ids": [c.user_id for c in round_.values()],
                "titles": [c.title for c in round_.values()],
                "descriptions": [c.description for c in round_.values()],
                "issued_ats": [c.issued_at for c in round_.values()],
                "command_ids": [c.command_id for c in round_.values()],
            },
        )
        created = {row[0] for row in rows}
        not_created = [c for c in round_.values() if c.task_id not in created]
        owners = await _owners(session, [c.task_id for c in not_created]) if not_created else {}
        for create in round_.values():
            if create.task_id in created:
                outcomes[create.command_id] = Outcome.APPLIED
            elif create.task_id in owners:
                outcomes[create.command_id] = Outcome.CONFLICT
            else:
                outcomes[create.command_id] = Outcome.USER_MISSING
        remaining = later
    return outcomes


async def _change(session: AsyncSession, commands: Sequence[UpdateTask | CompleteTask]) -> dict[UUID, Outcome]:
    merged: dict[tuple[UUID, int], _Change] = {}
    members: dict[tuple[UUID, int], list[UUID]] = {}
    for command in commands:
        key = (command.task_id, command.user_id)
        merged.setdefault(key, _Change(command.task_id, command.user_id)).absorb(command)
        members.setdefault(key, []).append(command.command_id)

    # Lock every task the batch changes, in id order, before changing any: concurrent batches
    # then wait for each other in one order and never deadlock. The rows read under the lock
    # are current (committed by now), so one UPDATE settles every change against them.
    owners = await _owners(session, sorted({key[0] for key in merged}), lock=True)
    applicable = sorted(
        (change for key, change in merged.items() if owners.get(key[0]) == key[1]), key=lambda ch: ch.task_id
    )
    if applicable:
        # Rows where nothing is newer are left untouched (stale or redelivered commands).
        await _run(session, statements.UPDATE_TASKS, _change_arrays(applicable))
    outcomes: dict[UUID, Outcome] = {}
    for key in merged:
        task_id, user_id = key
        if task_id not in owners:
            outcome = Outcome.TASK_MISSING
        elif owners[task_id] != user_id:
            outcome = Outcome.FORBIDDEN
        else:
            outcome = Outcome.APPLIED  # took effect, or changed nothing because newer values won
        for command_id in members[key]:
            outcomes[command_id] = outcome
    return outcomes


def _change_arrays(changes: list[_Change]) -> dict[str, list[Any]]:
    return {
        "task_ids": [ch.task_id for ch in changes],
        "user_ids": [ch.user_id for ch in changes],
        "set_titles": [ch.title is not None for ch in changes],
        "titles": [ch.title.title if ch.title else None for ch in changes],
        "title_ats": [ch.title.issued_at if ch.title else None for ch in changes],
        "title_commands": [ch.title.command_id if ch.title else None for ch in changes],
        "set_descriptions": [ch.description is not None for ch in changes],
        "descriptions": [ch.description.description if ch.description else None for ch in changes],
        "description_ats": [ch.description.issued_at if ch.description else None for ch in changes],
        "description_commands": [ch.description.command_id if ch.description else None for ch in changes],
        "completed_ats": [ch.completed_at for ch in changes],
    }


async def _run(session: AsyncSession, statement: TextClause, params: dict[str, Any]) -> Any:
    """Execute one prepared statement through the session (SQLModel's exec, typed loosely)."""
    return await session.exec(statement, params=params)  # type: ignore[call-overload]


async def _owners(session: AsyncSession, task_ids: list[UUID], *, lock: bool = False) -> dict[UUID, int]:
    statement = statements.LOCK_TASKS if lock else statements.CLASSIFY_TASKS
    rows = await _run(session, statement, {"task_ids": task_ids})
    return {row[0]: row[1] for row in rows}
