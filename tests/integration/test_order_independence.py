"""Order independence: any processing order, concurrency and redelivery converge on the oracle.

The property tests draw command histories for a few tasks, shuffle and duplicate their
deliveries, apply them concurrently against the real database, and compare every task row with
`tests.oracle`. Commands processed before their create come back as TASK_MISSING and are
re-applied once the create has committed (what the worker's not-yet retry does); transient
database errors are re-applied too, except deadlocks: batches lock in one order, so a deadlock
is a bug and fails the test.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final
from uuid import UUID, uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError
from taskline_producer import TaskProducer
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask

from tests.conftest import run_burst
from tests.oracle import compare_with_rows, expected_states
from worker.pipeline import statements
from worker.pipeline.apply import Outcome, apply_commands
from worker.pipeline.failures import Kind, classify_exception
from worker.pipeline.group_commit import GroupCommitter
from worker.store.engine import Sessions

pytestmark = pytest.mark.integration

BASE: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OFFSETS: Final = (UTC, timezone(timedelta(hours=1)), timezone(-timedelta(hours=5, minutes=30)))
"""issued_at is drawn in several UTC offsets: ordering must go by the instant, not the text."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
"""An update field left out (kept as it is), as opposed to a description of None (cleared)."""


# -- strategies ---------------------------------------------------------------------------


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12).filter(
    lambda s: not s.isspace()
)
# A few fixed values make "an update to the value the field already has" common.
titles = st.one_of(st.sampled_from(["x", "y", "Écrire ✓", "テスト"]), texts)
descriptions = st.one_of(st.none(), st.just(""), st.sampled_from(["d", "ü 🙂"]), texts)


@dataclass(frozen=True)
class Op:
    """An update or completion, `second` seconds after its task's create (1–6, so ties happen)."""

    kind: str  # "update" | "complete"
    second: int
    offset: int
    tiebreak: int  # the high bits of the command id: decides ties in issued_at
    title: Any = ABSENT
    description: Any = ABSENT


@dataclass(frozen=True)
class TaskSpec:
    user_id: int
    title: str
    description: str | None
    ops: tuple[Op, ...]


@st.composite
def ops(draw: st.DrawFn) -> Op:
    second = draw(st.integers(1, 6))
    offset = draw(st.integers(0, len(OFFSETS) - 1))
    tiebreak = draw(st.integers(0, 3))
    if draw(st.booleans()):
        return Op("complete", second, offset, tiebreak)
    title = draw(st.one_of(st.just(ABSENT), titles))
    description = draw(st.one_of(st.just(ABSENT), descriptions))
    if title is ABSENT and description is ABSENT:
        title = draw(titles)
    return Op("update", second, offset, tiebreak, title, description)


task_specs = st.builds(
    TaskSpec,
    user_id=st.integers(1, 20),
    title=titles,
    description=descriptions,
    ops=st.lists(ops(), max_size=8).map(tuple),
)


def _command_id(rank: int) -> UUID:
    """A fresh id whose order among its task's ids is decided by `rank` (its leading bits)."""
    return UUID(int=(rank << 96) | (uuid4().int & ((1 << 96) - 1)))


def materialize(spec: TaskSpec) -> list[Command]:
    """The commands of one task, with a fresh task id and fresh command ids (the create first)."""
    task_id = uuid4()
    owner = {"task_id": task_id, "user_id": spec.user_id}
    commands: list[Command] = [
        CreateTask(command_id=_command_id(0), issued_at=BASE, title=spec.title, description=spec.description, **owner)
    ]
    for index, op in enumerate(spec.ops, start=1):
        stamp = {
            "command_id": _command_id(op.tiebreak * 16 + index),
            "issued_at": (BASE + timedelta(seconds=op.second)).astimezone(OFFSETS[op.offset]),
        }
        if op.kind == "complete":
            commands.append(CompleteTask(**stamp, **owner))
        else:
            fields = {name: getattr(op, name) for name in ("title", "description") if getattr(op, name) is not ABSENT}
            commands.append(UpdateTask(**stamp, **owner, **fields))
    return commands


@st.composite
def deliveries(draw: st.DrawFn, commands: Sequence[Command]) -> list[Command]:
    """The commands shuffled, some of them delivered more than once."""
    repeats = draw(st.lists(st.sampled_from(commands), max_size=len(commands))) if commands else []
    return draw(st.permutations([*commands, *repeats]))


@st.composite
def batches(draw: st.DrawFn, delivered: Sequence[Command]) -> list[list[Command]]:
    """The deliveries cut into small batches (a batch may hold a command twice)."""
    result: list[list[Command]] = []
    start = 0
    while start < len(delivered):
        size = draw(st.integers(1, 5))
        result.append(list(delivered[start : start + size]))
        start += size
    return result


# -- helpers ------------------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """A database error worth another try (serialization failure, lost connection), but not a
    deadlock, which the lock order rules out."""
    if isinstance(exc, DBAPIError) and "deadlock detected" in str(exc):
        return False
    return isinstance(exc, DBAPIError) and classify_exception(exc)[0] is Kind.TRANSIENT


async def task_rows(db: asyncpg.Connection, task_ids: Sequence[UUID]) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM task WHERE id = ANY($1::uuid[])", list(task_ids))


async def assert_converged(db: asyncpg.Connection, commands: Sequence[Command]) -> None:
    """Every task row equals the oracle; processed_command holds each distinct command once."""
    expected = expected_states(commands)
    problems = compare_with_rows(expected, await task_rows(db, list(expected)))
    assert not problems, "\n".join(problems)

    processed = await db.fetch(
        "SELECT command_id, function, task_id, issued_at FROM processed_command WHERE task_id = ANY($1::uuid[])",
        list(expected),
    )
    distinct = {c.command_id: c for c in commands}
    assert Counter(row["command_id"] for row in processed) == Counter(distinct.keys())
    for row in processed:
        command = distinct[row["command_id"]]
        assert (row["function"], row["task_id"], row["issued_at"]) == (
            command.function,
            command.task_id,
            command.issued_at,
        )


def assert_applied_once(outcomes: dict[UUID, list[Outcome]], commands: Sequence[Command]) -> None:
    """Each distinct command took effect exactly once; every other delivery was a duplicate or
    a not-yet (TASK_MISSING) that was re-applied."""
    for command in {c.command_id: c for c in commands}.values():
        seen = outcomes[command.command_id]
        assert seen.count(Outcome.APPLIED) == 1, (command, seen)
        assert set(seen) <= {Outcome.APPLIED, Outcome.DUPLICATE, Outcome.TASK_MISSING}, (command, seen)


def describe(commands: Sequence[Command]) -> str:
    lines = []
    for c in sorted(commands, key=lambda c: (str(c.task_id), c.issued_at, c.command_id)):
        fields = c.model_dump(exclude={"task_id", "user_id"}, exclude_unset=True)
        fields["issued_at"] = c.issued_at.isoformat()
        lines.append(f"{str(c.task_id)[:8]} u{c.user_id} {c.function} {fields}")
    return "\n".join(lines)


async def apply_with_workers(
    sessions: Sessions, work: Sequence[list[Command]], workers: int
) -> dict[UUID, list[Outcome]]:
    """Apply the batches with `workers` concurrent transactions; re-apply what must wait.

    A command that comes back TASK_MISSING is parked until its task's create has committed and
    is then queued again on its own; a batch that fails with a transient error is queued again.
    A TASK_MISSING for a task whose create had committed before the batch started is a bug."""
    queue: asyncio.Queue[list[Command]] = asyncio.Queue()
    for batch in work:
        queue.put_nowait(batch)
    landed: set[UUID] = set()
    parked: dict[UUID, list[Command]] = defaultdict(list)
    outcomes: dict[UUID, list[Outcome]] = defaultdict(list)
    tries: Counter[int] = Counter()

    async def worker() -> None:
        while True:
            batch = await queue.get()
            try:
                visible = set(landed)
                try:
                    async with sessions() as session, session.begin():
                        results = await apply_commands(session, batch)
                except Exception as exc:
                    tries[id(batch)] += 1
                    if not is_transient(exc) or tries[id(batch)] > 20:
                        raise
                    event(f"transient error re-applied: {classify_exception(exc)[1][:40]}")
                    queue.put_nowait(batch)
                    continue
                for command, outcome in zip(batch, results, strict=True):
                    outcomes[command.command_id].append(outcome)
                    if outcome is Outcome.TASK_MISSING:
                        event("a command processed before its create was re-applied")
                        assert command.task_id not in visible, f"TASK_MISSING after its create committed: {command}"
                        if command.task_id in landed:
                            queue.put_nowait([command])
                        else:
                            parked[command.task_id].append(command)
                    elif isinstance(command, CreateTask) and outcome.took_effect:
                        landed.add(command.task_id)
                        for waiting in parked.pop(command.task_id, []):
                            queue.put_nowait([waiting])
            finally:
                queue.task_done()

    running = [asyncio.create_task(worker()) for _ in range(workers)]
    joined = asyncio.create_task(queue.join())
    try:
        async with asyncio.timeout(60):
            done, _ = await asyncio.wait({joined, *running}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*running, joined]:
            task.cancel()
        await asyncio.gather(*running, joined, return_exceptions=True)
    for task in done:
        if task is not joined:
            task.result()  # a worker died: raise its error
    assert not parked, f"commands whose create never landed: {dict(parked)}"
    return outcomes


def history_strategy(max_tasks: int) -> st.SearchStrategy[list[TaskSpec]]:
    return st.lists(task_specs, min_size=1, max_size=max_tasks)


# -- a. concurrent batches ----------------------------------------------------------------


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=history_strategy(4), data=st.data())
async def test_concurrent_shuffled_duplicated_batches_converge_to_the_oracle(sessions, db, users, specs, data):
    """Shuffled, duplicated batches applied by concurrent transactions end in the oracle's state."""
    commands = [command for spec in specs for command in materialize(spec)]
    note(describe(commands))
    delivered = data.draw(deliveries(commands), label="deliveries")
    work = data.draw(batches(delivered), label="batches")
    workers = data.draw(st.integers(1, 4), label="workers")

    outcomes = await apply_with_workers(sessions, work, workers)

    assert_applied_once(outcomes, commands)
    await assert_converged(db, commands)


# -- b. group commit ----------------------------------------------------------------------


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=history_strategy(4),
    data=st.data(),
    max_batch=st.integers(1, 8),
    flushers=st.integers(1, 3),
)
async def test_group_committed_concurrent_commands_converge_to_the_oracle(
    sessions, db, users, specs, data, max_batch, flushers
):
    """Every delivery submitted at once through the GroupCommitter ends in the oracle's state."""
    commands = [command for spec in specs for command in materialize(spec)]
    note(describe(commands))
    delivered = data.draw(deliveries(commands), label="deliveries")
    committer = GroupCommitter(sessions, max_batch=max_batch, flushers=flushers)
    landed = {c.task_id: asyncio.Event() for c in commands}
    outcomes: dict[UUID, list[Outcome]] = defaultdict(list)

    async def deliver(command: Command) -> None:
        for _ in range(30):
            visible = landed[command.task_id].is_set()
            try:
                outcome = await committer.apply(command)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                event(f"transient error re-applied: {classify_exception(exc)[1][:40]}")
                continue
            outcomes[command.command_id].append(outcome)
            if outcome is Outcome.TASK_MISSING:
                event("a command processed before its create was re-applied")
                assert not visible, f"TASK_MISSING after its create committed: {command}"
                await landed[command.task_id].wait()  # the not-yet retry, once the create is in
                continue
            if isinstance(command, CreateTask) and outcome.took_effect:
                landed[command.task_id].set()
            return
        raise AssertionError(f"gave up re-applying {command}")

    async with asyncio.timeout(60):
        await asyncio.gather(*(deliver(command) for command in delivered))
    await committer.wait_idle()

    assert_applied_once(outcomes, commands)
    await assert_converged(db, commands)


# -- c. stale, redelivered and same-value commands -----------------------------------------


async def _row(db: asyncpg.Connection, task_id: UUID) -> asyncpg.Record:
    return await db.fetchrow("SELECT xmin::text AS version, * FROM task WHERE id = $1", task_id)


async def _apply(sessions: Sessions, *commands: Command) -> list[Outcome]:
    async with sessions() as session, session.begin():
        return await apply_commands(session, commands)


def _at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


async def test_stale_and_redelivered_commands_leave_the_row_untouched(sessions, db, users):
    """Stale or redelivered commands change nothing (updated_at included); a same-value newer update still wins."""
    task_id = uuid4()
    owner = {"task_id": task_id, "user_id": 3}
    create = CreateTask(command_id=uuid4(), issued_at=_at(0), title="x", **owner)
    y_at_1 = UpdateTask(command_id=uuid4(), issued_at=_at(1), title="y", **owner)
    x_at_2 = UpdateTask(command_id=uuid4(), issued_at=_at(2), title="x", **owner)

    assert await _apply(sessions, create) == [Outcome.APPLIED]
    created = await _row(db, task_id)

    # Same value, newer stamp: the stamp moves on, updated_at does not.
    assert await _apply(sessions, x_at_2) == [Outcome.APPLIED]
    after_same_value = await _row(db, task_id)
    assert after_same_value["title"] == "x"
    assert after_same_value["updated_at"] == created["updated_at"]
    assert after_same_value["title_issued_at"] == _at(2)

    # Stale (older than the field's stamp): refused by the stamp, the row is not even rewritten.
    assert await _apply(sessions, y_at_1) == [Outcome.APPLIED]
    after_stale = await _row(db, task_id)
    assert after_stale["title"] == "x"
    assert dict(after_stale) == dict(after_same_value)

    # Redelivered: a duplicate, nothing written.
    assert await _apply(sessions, x_at_2) == [Outcome.DUPLICATE]
    assert await _apply(sessions, create) == [Outcome.DUPLICATE]
    assert dict(await _row(db, task_id)) == dict(after_same_value)

    # A newer, different value does change updated_at: the checks above could have failed.
    z_at_3 = UpdateTask(command_id=uuid4(), issued_at=_at(3), title="z", **owner)
    assert await _apply(sessions, z_at_3) == [Outcome.APPLIED]
    changed = await _row(db, task_id)
    assert changed["title"] == "z"
    assert changed["updated_at"] > created["updated_at"]
    await assert_converged(db, [create, y_at_1, x_at_2, z_at_3])


async def test_a_stale_completion_after_an_earlier_one_leaves_the_row_untouched(sessions, db, users):
    """A later completion or a description update older than the field's stamp does not touch the row."""
    task_id = uuid4()
    owner = {"task_id": task_id, "user_id": 3}
    create = CreateTask(command_id=uuid4(), issued_at=_at(0), title="t", description="new", **owner)
    complete = CompleteTask(command_id=uuid4(), issued_at=_at(2), **owner)
    clear_later = UpdateTask(command_id=uuid4(), issued_at=_at(3), description=None, **owner)
    stale_description = UpdateTask(command_id=uuid4(), issued_at=_at(1), description="old", **owner)
    later_complete = CompleteTask(command_id=uuid4(), issued_at=_at(4), **owner)

    assert await _apply(sessions, create, complete, clear_later) == [Outcome.APPLIED] * 3
    before = await _row(db, task_id)
    assert (before["completed_at"], before["description"]) == (_at(2), None)

    assert await _apply(sessions, stale_description, later_complete) == [Outcome.APPLIED] * 2
    assert dict(await _row(db, task_id)) == dict(before)
    await assert_converged(db, [create, complete, clear_later, stale_description, later_complete])


# -- d. refused commands ------------------------------------------------------------------


async def test_commands_for_another_users_task_are_forbidden_and_change_nothing(sessions, db, users):
    """update/complete by a user who does not own the task → FORBIDDEN, row and processed_command unchanged."""
    task_id = uuid4()
    create = CreateTask(command_id=uuid4(), issued_at=_at(0), task_id=task_id, user_id=4, title="mine")
    assert await _apply(sessions, create) == [Outcome.APPLIED]
    before = await _row(db, task_id)

    intruder = {"task_id": task_id, "user_id": 5}
    foreign_update = UpdateTask(command_id=uuid4(), issued_at=_at(5), title="theirs", description="x", **intruder)
    foreign_complete = CompleteTask(command_id=uuid4(), issued_at=_at(5), **intruder)
    assert await _apply(sessions, foreign_update, foreign_complete) == [Outcome.FORBIDDEN] * 2
    assert dict(await _row(db, task_id)) == dict(before)

    # Mixed with the owner's own update in one batch, only the owner's applies.
    own_update = UpdateTask(command_id=uuid4(), issued_at=_at(1), task_id=task_id, user_id=4, title="still mine")
    assert await _apply(sessions, foreign_update, own_update) == [Outcome.FORBIDDEN, Outcome.APPLIED]
    await assert_converged(db, [create, own_update])


async def test_a_second_create_for_a_task_id_is_a_conflict_even_with_identical_content(sessions, db, users):
    """A create with another command id for an existing task id → CONFLICT and no change, even if identical."""
    task_id = uuid4()
    fields = {"task_id": task_id, "user_id": 6, "title": "same", "description": "same", "issued_at": _at(0)}
    create = CreateTask(command_id=uuid4(), **fields)
    assert await _apply(sessions, create) == [Outcome.APPLIED]
    before = await _row(db, task_id)

    twin = CreateTask(command_id=uuid4(), **fields)
    assert await _apply(sessions, twin) == [Outcome.CONFLICT]
    # In one batch with the first create's redelivery too.
    assert await _apply(sessions, create, twin) == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert dict(await _row(db, task_id)) == dict(before)
    await assert_converged(db, [create])


async def test_completing_twice_keeps_the_earliest_completed_at(sessions, db, users):
    """Two completions in either order, in one batch or two, leave completed_at at the earliest one."""
    for split in (True, False):
        task_id = uuid4()
        owner = {"task_id": task_id, "user_id": 7}
        create = CreateTask(command_id=uuid4(), issued_at=_at(0), title="done twice", **owner)
        late = CompleteTask(command_id=uuid4(), issued_at=_at(5), **owner)
        early = CompleteTask(command_id=uuid4(), issued_at=_at(3), **owner)
        assert await _apply(sessions, create) == [Outcome.APPLIED]
        if split:
            assert await _apply(sessions, late) == [Outcome.APPLIED]
            assert (await _row(db, task_id))["completed_at"] == _at(5)
            assert await _apply(sessions, early) == [Outcome.APPLIED]
        else:
            assert await _apply(sessions, late, early) == [Outcome.APPLIED] * 2
        row = await _row(db, task_id)
        assert (row["completed"], row["completed_at"]) == (True, _at(3))
        # The later one again, redelivered and as a fresh command: nothing moves.
        again = CompleteTask(command_id=uuid4(), issued_at=_at(4), **owner)
        assert await _apply(sessions, late, again) == [Outcome.DUPLICATE, Outcome.APPLIED]
        assert dict(await _row(db, task_id)) == dict(row)


# -- a race, made deterministic -------------------------------------------------------------


async def test_an_update_whose_create_commits_mid_transaction_is_not_lost(sessions, db, users):
    """An update whose create commits right after the update's transaction looked for the task
    still lands: the look finds nothing (a not-yet), and the retry applies it."""
    task_id = uuid4()
    owner = {"task_id": task_id, "user_id": 8}
    create = CreateTask(command_id=uuid4(), issued_at=_at(0), title="before", **owner)
    update = UpdateTask(command_id=uuid4(), issued_at=_at(1), title="after", **owner)

    raced: list[Outcome] = []
    async with sessions() as session, session.begin():
        exec_ = session.exec

        async def exec_then_commit_the_create(statement: Any, *args: Any, **kwargs: Any) -> Any:
            result = await exec_(statement, *args, **kwargs)
            if statement is statements.LOCK_TASKS and not raced:
                # The lock found no row; now another transaction creates it and commits.
                raced.extend(await _apply(sessions, create))
            return result

        session.exec = exec_then_commit_the_create  # type: ignore[method-assign]
        first = await apply_commands(session, [update])

    assert raced == [Outcome.APPLIED], "the lock statement never ran: the race was not staged"
    assert first == [Outcome.TASK_MISSING]
    assert (await _row(db, task_id))["title"] == "before"
    assert await _apply(sessions, update) == [Outcome.APPLIED]
    await assert_converged(db, [create, update])


# -- e. end to end through Redis and arq ---------------------------------------------------


@pytest.mark.parametrize("wait_for_create", [0.0, 4.0], ids=["retried-through-redis", "waiting-in-the-worker"])
async def test_commands_enqueued_before_their_create_land_through_the_worker(
    settings, redis, db, users, wait_for_create
):
    """Updates and completions enqueued before their create all land: retried by the worker as
    not-yet (TASKLINE_WAIT_FOR_CREATE=0), or waiting in it for their create (the default)."""
    settings = settings.model_copy(update={"wait_for_create": wait_for_create})
    rng = random.Random(20261125)
    commands: list[Command] = []
    for n in range(4):
        task_id = uuid4()
        owner = {"task_id": task_id, "user_id": 10 + n}
        # Create ids sort last, so the worker (one job at a time, by score then id) runs every
        # other command of the task first.
        commands.append(
            CreateTask(
                command_id=UUID(int=(0xFF << 120) | uuid4().int >> 8),
                issued_at=_at(0),
                title=f"task {n}",
                description="start",
                **owner,
            )
        )
        for index in range(5):
            at = _at(rng.choice([1, 2, 2, 3]))
            cid = UUID(int=uuid4().int >> 8)
            choice = rng.random()
            if choice < 0.2:
                commands.append(CompleteTask(command_id=cid, issued_at=at, **owner))
            elif choice < 0.5:
                commands.append(
                    UpdateTask(command_id=cid, issued_at=at, description=rng.choice([None, "", "ü"]), **owner)
                )
            else:
                commands.append(UpdateTask(command_id=cid, issued_at=at, title=f"{n}.{index} ✓", **owner))
    creates = [c for c in commands if isinstance(c, CreateTask)]
    others = [c for c in commands if not isinstance(c, CreateTask)]
    rng.shuffle(creates)
    rng.shuffle(others)

    producer = TaskProducer(redis, queue=settings.queue)
    for command in others:
        assert (await producer.send(command)).queued
    # A redelivery: a bulk job repeating the first task's create and some other commands.
    first_task = creates[0].task_id
    redelivered = [creates[0], *[c for c in others if c.task_id == first_task][:2], *others[-3:]]
    assert (await producer.send_bulk(redelivered, job_id=f"bulk-{uuid4()}")).queued
    for command in creates:
        assert (await producer.send(command)).queued

    worker = await run_burst(settings, max_jobs=1)

    await assert_converged(db, commands)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0
    # Every single job of a task whose create was not in the bulk job ran before that create.
    must_wait = [c for c in others if c.task_id != first_task]
    if wait_for_create:
        assert worker.jobs_retried == 0  # they waited in the worker for their create instead
    else:
        assert worker.jobs_retried >= len(must_wait)
