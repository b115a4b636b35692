"""The SQL that applies commands: one multi-row statement per step, whatever the batch size.

Each statement takes parallel arrays (one element per command or per task), is built from the
table models (`worker.store.models`) and rendered once into SQL text (`compiled_text`), so it is
prepared once per connection. Locks are taken in key order and in the same phases by every batch
(commands, then new tasks, then the existing tasks a batch changes, all locked before any is
updated), so concurrent batches wait for each other but never deadlock.

`record_arrays` and `task_arrays` build the parameters of the statements that take commands;
the benchmark's floor (bench/floor.py) uses them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Integer,
    Text,
    TextClause,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import Cast
from sqlalchemy.sql.selectable import CTE, TableValuedAlias
from sqlalchemy.types import TypeEngine
from taskline_producer.contract import Command, CreateTask

from worker.pipeline.fingerprint import command_fingerprint
from worker.store.compiled import compiled_text
from worker.store.models import ProcessedCommand, Task, User, table_of

__all__ = [
    "CLASSIFY_TASKS",
    "FORGET_COMMANDS",
    "INSERT_TASKS",
    "LOCK_TASKS",
    "RECORD_AND_INSERT_TASKS",
    "RECORD_COMMANDS",
    "UPDATE_TASKS",
    "new_task_columns",
    "record_arrays",
    "task_arrays",
]

_TASK: Final = table_of(Task)


def new_task_columns() -> list[Any]:
    """The task columns a create fills, in the order its SELECT gives them (the worker's statements
    and the benchmark's floor both insert in this order)."""
    t = _TASK.c
    return [
        t.id,
        t.user_id,
        t.title,
        t.description,
        t.completed,
        t.created_at,
        t.updated_at,
        t.title_issued_at,
        t.title_command_id,
        t.description_issued_at,
        t.description_command_id,
    ]
_PROCESSED: Final = table_of(ProcessedCommand)
_USER: Final = table_of(User)

# Array elements are cast to the columns' own types, except strings: an explicit cast to
# varchar(n) cuts a longer value silently, where text is checked against the column on insert.
_UUID: Final = _TASK.c.id.type
_INT: Final = _TASK.c.user_id.type
_TIME: Final = _TASK.c.title_issued_at.type


def _array(name: str, element: TypeEngine[Any]) -> Cast[Any]:
    """`CAST(:name AS element[])`: one parameter holding one value per row."""
    return cast(bindparam(name), ARRAY(element))


def _unnest(alias: str, *arrays: tuple[str, str, TypeEngine[Any]]) -> TableValuedAlias:
    """`unnest(CAST(:param AS type[]), ...) AS alias(column, ...)`, from (param, column, type)."""
    rows = func.unnest(*(_array(param, type_) for param, _, type_ in arrays))
    return rows.table_valued(*(column(name, type_) for _, name, type_ in arrays)).render_derived(name=alias)


def _by_id(ids: str) -> ColumnElement[bool]:
    return _TASK.c.id == any_(_array(ids, _UUID))


def _record() -> ReturningInsert[Any]:
    """Record each command with the worker, the transaction (now() is the transaction's start,
    so processed_at and transaction_id together name it) and its fingerprint. A command already
    recorded with the same fingerprint (or none) is a duplicate: its row counts one more
    duplicate (this touches only duplicates, which are rare) and is returned with duplicates > 0,
    so fresh rows (duplicates = 0) are the newly recorded ones. A command whose id is recorded
    with another fingerprint is another command reusing the id: its row is left alone and not
    returned at all."""
    c = _unnest(
        "c",
        ("command_ids", "command_id", _UUID),
        ("functions", "function", Text()),
        ("task_ids", "task_id", _UUID),
        ("issued_ats", "issued_at", _TIME),
        ("fingerprints", "fingerprint", _PROCESSED.c.fingerprint.type),
        ("signed_bys", "signed_by", Text()),
    )
    rows = select(
        c.c.command_id,
        c.c.function,
        c.c.task_id,
        c.c.issued_at,
        func.now(),
        cast(bindparam("worker_id"), Text),
        cast(cast(func.pg_current_xact_id(), Text), BigInteger),
        c.c.fingerprint,
        c.c.signed_by,
    ).order_by(c.c.command_id)
    p = _PROCESSED.c
    columns = [p.command_id, p.function, p.task_id, p.issued_at, p.processed_at, p.worker_id, p.transaction_id]
    columns += [p.fingerprint, p.signed_by]
    statement = insert(_PROCESSED).from_select(columns, rows)
    same_command = or_(p.fingerprint.is_(None), p.fingerprint == statement.excluded.fingerprint)
    return statement.on_conflict_do_update(
        index_elements=[p.command_id], set_={p.duplicates: p.duplicates + literal_column("1")}, where=same_command
    ).returning(p.command_id, p.duplicates)


def _fresh(recorded: CTE) -> Any:
    return select(recorded.c.command_id).where(recorded.c.duplicates == literal_column("0"))


def _insert_tasks(prefix: str = "", fresh: CTE | None = None) -> ReturningInsert[Any]:
    """Create the tasks whose user exists (and whose create is in `fresh`, when given); an id
    already taken is skipped and not returned."""
    c = _unnest(
        "c",
        (f"{prefix}task_ids", "id", _UUID),
        (f"{prefix}user_ids", "user_id", _INT),
        (f"{prefix}titles", "title", Text()),
        (f"{prefix}descriptions", "description", Text()),
        (f"{prefix}issued_ats", "issued_at", _TIME),
        (f"{prefix}command_ids", "command_id", _UUID),
    )
    where: list[ColumnElement[bool]] = [exists().where(_USER.c.id == c.c.user_id)]
    if fresh is not None:
        where.append(c.c.command_id.in_(select(fresh.c.command_id)))
    rows = (
        select(
            c.c.id,
            c.c.user_id,
            c.c.title,
            c.c.description,
            false(),
            func.now(),
            func.now(),
            c.c.issued_at,
            c.c.command_id,
            c.c.issued_at,
            c.c.command_id,
        )
        .where(*where)
        .order_by(c.c.id)
    )
    columns = new_task_columns()
    t = _TASK.c
    return insert(_TASK).from_select(columns, rows).on_conflict_do_nothing(index_elements=[t.id]).returning(t.id)


def _record_and_insert_tasks() -> Any:
    recorded = _record().cte("recorded")
    fresh = _fresh(recorded).cte("fresh")
    created = _insert_tasks("create_", fresh).cte("created")
    return union_all(
        select(recorded.c.command_id, recorded.c.duplicates, cast(null(), _UUID).label("task_id")),
        select(cast(null(), _UUID), cast(null(), Integer).label("duplicates"), created.c.id),
    )


def _update_tasks() -> Any:
    t = _TASK
    u = _unnest(
        "u",
        ("task_ids", "task_id", _UUID),
        ("user_ids", "user_id", _INT),
        ("set_titles", "set_title", Boolean()),
        ("titles", "title", Text()),
        ("title_ats", "title_at", _TIME),
        ("title_commands", "title_command", _UUID),
        ("set_descriptions", "set_description", Boolean()),
        ("descriptions", "description", Text()),
        ("description_ats", "description_at", _TIME),
        ("description_commands", "description_command", _UUID),
        ("completed_ats", "completed_at", _TIME),
    )
    v = select(u).order_by(u.c.task_id).subquery("v")
    # A field changes when the command's (issued_at, command_id) stamp is newer than the one that
    # set it last; a completion counts when it is earlier than the recorded one. Rows where
    # nothing is newer are not touched at all, updated_at included.
    title_newer = and_(
        v.c.set_title, tuple_(v.c.title_at, v.c.title_command) > tuple_(t.c.title_issued_at, t.c.title_command_id)
    ).self_group()
    description_newer = and_(
        v.c.set_description,
        tuple_(v.c.description_at, v.c.description_command)
        > tuple_(t.c.description_issued_at, t.c.description_command_id),
    ).self_group()
    completion_earlier = and_(
        v.c.completed_at.is_not(None), or_(t.c.completed_at.is_(None), v.c.completed_at < t.c.completed_at)
    ).self_group()
    return (
        update(t)
        .values(
            title=case((title_newer, v.c.title), else_=t.c.title),
            title_issued_at=case((title_newer, v.c.title_at), else_=t.c.title_issued_at),
            title_command_id=case((title_newer, v.c.title_command), else_=t.c.title_command_id),
            description=case((description_newer, v.c.description), else_=t.c.description),
            description_issued_at=case((description_newer, v.c.description_at), else_=t.c.description_issued_at),
            description_command_id=case((description_newer, v.c.description_command), else_=t.c.description_command_id),
            completed=or_(t.c.completed, v.c.completed_at.is_not(None)),
            completed_at=case((completion_earlier, v.c.completed_at), else_=t.c.completed_at),
            updated_at=case(
                (
                    or_(
                        and_(title_newer, v.c.title.is_distinct_from(t.c.title)),
                        and_(description_newer, v.c.description.is_distinct_from(t.c.description)),
                        completion_earlier,
                    ),
                    func.now(),
                ),
                else_=t.c.updated_at,
            ),
        )
        .where(
            t.c.id == v.c.task_id,
            t.c.user_id == v.c.user_id,
            or_(title_newer, description_newer, completion_earlier),
        )
    )


RECORD_COMMANDS: Final[TextClause] = compiled_text(_record())
"""Claim the commands as processed; returns (command_id, duplicates): 0 for the ones not
processed before, more for redeliveries; an id not returned is recorded for another command."""

FORGET_COMMANDS: Final[TextClause] = compiled_text(
    delete(_PROCESSED).where(_PROCESSED.c.command_id == any_(_array("command_ids", _UUID)))
)
"""Undo the claim of commands that were refused or must wait (same transaction)."""

INSERT_TASKS: Final[TextClause] = compiled_text(_insert_tasks())
"""Create tasks whose user exists; an id already taken is skipped (the caller classifies it)."""

RECORD_AND_INSERT_TASKS: Final[TextClause] = compiled_text(_record_and_insert_tasks())
"""RECORD_COMMANDS and INSERT_TASKS in one round trip, for a batch with creates (at most one per
task id): records every command, and creates the tasks of the creates that were not processed
before (`create_`-prefixed arrays). Returns (command_id, duplicates, NULL) per command recorded
(duplicates 0: newly; an id not returned is recorded for another command, as for
RECORD_COMMANDS) and (NULL, NULL, task_id) per task created. Locks are taken in the same order as the two statements
would take them: commands, then tasks."""

UPDATE_TASKS: Final[TextClause] = compiled_text(_update_tasks())
"""Apply merged updates/completions, one row per task, to rows LOCK_TASKS has locked."""

CLASSIFY_TASKS: Final[TextClause] = compiled_text(select(_TASK.c.id, _TASK.c.user_id).where(_by_id("task_ids")))
"""Who owns the tasks a statement did not touch (absent: not created yet)."""

LOCK_TASKS: Final[TextClause] = compiled_text(
    select(_TASK.c.id, _TASK.c.user_id).where(_by_id("task_ids")).order_by(_TASK.c.id).with_for_update()
)
"""Lock the tasks a batch changes, in id order, and read their owners at the latest committed
version. A task whose create has not committed yet is not found: its changes must wait."""


def record_arrays(
    commands: Sequence[Command], worker_id: str | None, signers: Mapping[UUID, str] | None = None
) -> dict[str, Any]:
    """The parameters of RECORD_COMMANDS (and of RECORD_AND_INSERT_TASKS' recording); `signers`:
    the id of the key that signed each signed command's job, by command id."""
    return {
        "worker_id": worker_id,
        "command_ids": [c.command_id for c in commands],
        "functions": [c.function for c in commands],
        "task_ids": [c.task_id for c in commands],
        "issued_ats": [c.issued_at for c in commands],
        "fingerprints": [command_fingerprint(c) for c in commands],
        "signed_bys": [signers.get(c.command_id) for c in commands] if signers else [None] * len(commands),
    }


def task_arrays(creates: Sequence[CreateTask], prefix: str = "") -> dict[str, list[Any]]:
    """The parameters of INSERT_TASKS (with `prefix="create_"`: of RECORD_AND_INSERT_TASKS' creates)."""
    return {
        f"{prefix}task_ids": [c.task_id for c in creates],
        f"{prefix}user_ids": [c.user_id for c in creates],
        f"{prefix}titles": [c.title for c in creates],
        f"{prefix}descriptions": [c.description for c in creates],
        f"{prefix}issued_ats": [c.issued_at for c in creates],
        f"{prefix}command_ids": [c.command_id for c in creates],
    }
