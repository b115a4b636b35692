"""A pure-Python oracle for the final state of tasks, and a helper to compare it with the database.

The oracle is the specification written as the simplest possible program: take each task's
valid commands once each, sort them by `(issued_at, command_id)`, and apply them one after the
other. The create sets the title, the description and the owner; an update sets the fields it
carries (an absent field is left alone, a `description` of None clears it); a completion marks
the task completed, and `completed_at` is the `issued_at` of the earliest completion. Updates
issued after a completion still apply. Nothing here knows about stamps, merging or SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask

__all__ = ["TaskState", "compare_with_rows", "expected_states", "final_state"]


@dataclass(frozen=True, slots=True)
class TaskState:
    """The observable state of one task row."""

    user_id: int
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None


def _order(command: Command) -> tuple[datetime, UUID]:
    return (command.issued_at, command.command_id)


def final_state(commands: Iterable[Command]) -> TaskState:
    """The state of one task after applying its valid commands once each in (issued_at, command_id) order.

    Repeats of a command id count once. The commands must include exactly one create, and it
    must be the first in that order (histories are generated that way)."""
    unique: dict[UUID, Command] = {}
    for command in commands:
        unique.setdefault(command.command_id, command)
    history = sorted(unique.values(), key=_order)
    creates = [c for c in history if isinstance(c, CreateTask)]
    if len(creates) != 1 or history[0] is not creates[0]:
        raise ValueError("a history needs exactly one create_task, issued before its other commands")
    create = creates[0]
    if len({c.task_id for c in history}) != 1 or any(c.user_id != create.user_id for c in history):
        raise ValueError("a history is the valid commands of one task, all by its owner")

    title = create.title
    description = create.description
    completed_at: datetime | None = None
    for command in history[1:]:
        if isinstance(command, UpdateTask):
            if command.sets_title:
                assert command.title is not None
                title = command.title
            if command.sets_description:
                description = command.description
        elif isinstance(command, CompleteTask):
            if completed_at is None:  # applied in issued_at order: the first one is the earliest
                completed_at = command.issued_at
        else:  # pragma: no cover - a second create is not a valid command of this history
            raise ValueError(f"unexpected command in a task history: {command!r}")
    return TaskState(
        user_id=create.user_id,
        title=title,
        description=description,
        completed=completed_at is not None,
        completed_at=completed_at,
    )


def expected_states(commands: Iterable[Command]) -> dict[UUID, TaskState]:
    """The oracle's final state of every task that the (valid) commands mention."""
    by_task: dict[UUID, list[Command]] = {}
    for command in commands:
        by_task.setdefault(command.task_id, []).append(command)
    return {task_id: final_state(history) for task_id, history in by_task.items()}


def state_of_row(row: Mapping[str, Any]) -> TaskState:
    return TaskState(
        user_id=row["user_id"],
        title=row["title"],
        description=row["description"],
        completed=row["completed"],
        completed_at=row["completed_at"],
    )


def compare_with_rows(expected: Mapping[UUID, TaskState], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every difference between the oracle and rows of the `task` table (empty list: they agree).

    Rows need the columns id, user_id, title, description, completed and completed_at; rows of
    tasks the oracle does not know about are reported, and so are tasks without a row.
    Timestamps are compared as instants, whatever their UTC offset."""
    actual = {row["id"]: state_of_row(row) for row in rows}
    problems = []
    for task_id, state in expected.items():
        if task_id not in actual:
            problems.append(f"task {task_id}: no row, expected {state}")
        elif actual[task_id] != state:
            problems.append(f"task {task_id}: row is {actual[task_id]}, expected {state}")
    for task_id in actual.keys() - expected.keys():
        problems.append(f"task {task_id}: unexpected row {actual[task_id]}")
    return problems
