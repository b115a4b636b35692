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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause
from sqlmodel.ext.asyncio.session import AsyncSession
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask

from worker.pipeline import statements

__all__ = ["Outcome", "apply_commands", "existing_tasks"]


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
    REUSED_ID = "reused_id"
    """Its command_id was recorded for another command (another function or other fields)."""

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


async def apply_commands(
    session: AsyncSession,
    commands: Sequence[Command],
    *,
    worker_id: str | None = None,
    signers: Mapping[UUID, str] | None = None,
) -> list[Outcome]:
    """Apply `commands` in the session's open transaction; one outcome per command, in order.
    `worker_id` is recorded with each processed command (`taskline trace` shows it), and so is
    the key that signed it (`signers`, by command id; unsigned commands are not in it)."""
    outcomes: dict[UUID, Outcome] = {}
    unique: dict[UUID, Command] = {}
    for command in commands:
        unique.setdefault(command.command_id, command)

    creates = [c for c in unique.values() if isinstance(c, CreateTask)]
    first_round, later = _one_per_task(creates)
    if first_round:
        # The common case, one round trip: record the commands and create the tasks together.
        recorded, created = await _record_and_create(session, list(unique.values()), first_round, worker_id, signers)
    else:
        recorded, created = await _record(session, list(unique.values()), worker_id, signers), set()
    fresh = {command_id for command_id, duplicates in recorded.items() if duplicates == 0}
    for command_id in unique:
        if command_id not in recorded:
            outcomes[command_id] = Outcome.REUSED_ID  # its row is another command's: left alone
        elif command_id not in fresh:
            outcomes[command_id] = Outcome.DUPLICATE

    if first_round:
        outcomes.update(await _classify_creates(session, [c for c in first_round if c.command_id in fresh], created))
    if later:
        outcomes.update(await _create(session, [c for c in later if c.command_id in fresh]))
    changes = [c for c in unique.values() if isinstance(c, (UpdateTask, CompleteTask)) and c.command_id in fresh]
    if changes:
        outcomes.update(await _change(session, changes))

    refused = [c for c, outcome in outcomes.items() if not outcome.took_effect and outcome is not Outcome.REUSED_ID]
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


async def _record(
    session: AsyncSession, commands: list[Command], worker_id: str | None, signers: Mapping[UUID, str] | None
) -> dict[UUID, int]:
    """Record the commands; returns each recorded one's earlier deliveries (0: fresh). An id
    missing from the answer is recorded for another command."""
    rows = await _run(session, statements.RECORD_COMMANDS, statements.record_arrays(commands, worker_id, signers))
    return {row[0]: row[1] for row in rows}


def _one_per_task(creates: list[CreateTask]) -> tuple[list[CreateTask], list[CreateTask]]:
    """Split creates into one per task id (in order) and the rest: one INSERT statement decides
    who wins each id, so creates that share a task id go into separate statements."""
    first: dict[UUID, CreateTask] = {}
    rest: list[CreateTask] = []
    for create in creates:
        if create.task_id in first:
            rest.append(create)
        else:
            first[create.task_id] = create
    return list(first.values()), rest


async def _record_and_create(
    session: AsyncSession,
    commands: list[Command],
    creates: list[CreateTask],
    worker_id: str | None,
    signers: Mapping[UUID, str] | None,
) -> tuple[dict[UUID, int], set[UUID]]:
    """Record the commands and insert the tasks of the fresh creates in one statement; returns
    the recorded commands' earlier deliveries (as `_record`) and the created task ids."""
    rows = await _run(
        session,
        statements.RECORD_AND_INSERT_TASKS,
        {**statements.record_arrays(commands, worker_id, signers), **statements.task_arrays(creates, prefix="create_")},
    )
    recorded: dict[UUID, int] = {}
    created: set[UUID] = set()
    for command_id, duplicates, task_id in rows:
        if command_id is not None:
            recorded[command_id] = duplicates
        else:
            created.add(task_id)
    return recorded, created


async def _create(session: AsyncSession, creates: list[CreateTask]) -> dict[UUID, Outcome]:
    """Insert the tasks of fresh creates, one create per task id per statement."""
    outcomes: dict[UUID, Outcome] = {}
    remaining = creates
    while remaining:
        round_, remaining = _one_per_task(remaining)
        rows = await _run(session, statements.INSERT_TASKS, statements.task_arrays(round_))
        outcomes.update(await _classify_creates(session, round_, {row[0] for row in rows}))
    return outcomes


async def _classify_creates(
    session: AsyncSession, creates: list[CreateTask], created: set[UUID]
) -> dict[UUID, Outcome]:
    """Outcomes of fresh creates (one per task id) after their INSERT created `created`."""
    not_created = [c.task_id for c in creates if c.task_id not in created]
    owners = await _owners(session, not_created) if not_created else {}
    outcomes: dict[UUID, Outcome] = {}
    for create in creates:
        if create.task_id in created:
            outcomes[create.command_id] = Outcome.APPLIED
        elif create.task_id in owners:
            outcomes[create.command_id] = Outcome.CONFLICT
        else:
            outcomes[create.command_id] = Outcome.USER_MISSING
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


async def existing_tasks(session: AsyncSession, task_ids: Sequence[UUID]) -> set[UUID]:
    """Which of these tasks exist (committed), in the session's transaction."""
    return set(await _owners(session, list(task_ids))) if task_ids else set()


async def _owners(session: AsyncSession, task_ids: list[UUID], *, lock: bool = False) -> dict[UUID, int]:
    statement = statements.LOCK_TASKS if lock else statements.CLASSIFY_TASKS
    rows = await _run(session, statement, {"task_ids": task_ids})
    return {row[0]: row[1] for row in rows}
