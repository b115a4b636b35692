"""Concurrent batches lock task rows in one order, so they wait for each other but never deadlock.

A deadlock is not only slow (PostgreSQL notices one after `deadlock_timeout`, a second by
default) but eats a try of the job's transient budget. These tests run many concurrent
transactions over the same few tasks, each batch mixing fresh changes, stale ones (which change
nothing and so are not touched by the UPDATE), creates and completions, in random orders, and
count the deadlocks: there must be none.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Final
from uuid import UUID, uuid4

import pytest
from sqlalchemy.exc import DBAPIError
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask

from worker.pipeline.apply import Outcome, apply_commands
from worker.store.engine import Sessions

pytestmark = pytest.mark.integration

BASE: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


async def _run_concurrently(sessions: Sessions, batches: list[list[Command]], workers: int) -> tuple[int, int]:
    """Apply the batches with `workers` concurrent transactions; returns (batches, deadlocks)."""
    queue: asyncio.Queue[list[Command]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    deadlocks = 0
    applied = 0

    async def worker() -> None:
        nonlocal deadlocks, applied
        while not queue.empty():
            batch = queue.get_nowait()
            try:
                async with sessions() as session, session.begin():
                    await apply_commands(session, batch)
                applied += 1
            except DBAPIError as exc:
                if _sqlstate(exc) != "40P01":
                    raise
                deadlocks += 1

    async with asyncio.timeout(90):
        await asyncio.gather(*(worker() for _ in range(workers)))
    return applied, deadlocks


async def test_concurrent_batches_over_the_same_tasks_never_deadlock(sessions, db, users):
    rng = random.Random(7)
    owners = {uuid4(): rng.choice(users) for _ in range(12)}
    tasks = list(owners)
    # Half of the tasks exist before, half are created by the batches themselves.
    existing = tasks[:6]
    await db.executemany(
        """INSERT INTO task (id, user_id, title, completed, created_at, updated_at,
               title_issued_at, title_command_id, description_issued_at, description_command_id)
           VALUES ($1, $2, 'seed', false, now(), now(), $3, $4, $3, $4)""",
        [(task_id, owners[task_id], BASE + timedelta(seconds=30), uuid4()) for task_id in existing],
    )

    def change(task_id: UUID) -> Command:
        # Stamps before the seed's 30 s are stale for the existing tasks: they change nothing.
        stamp = {"command_id": uuid4(), "issued_at": BASE + timedelta(seconds=rng.uniform(0, 60))}
        if rng.random() < 0.2:
            return CompleteTask(task_id=task_id, user_id=owners[task_id], **stamp)
        return UpdateTask(task_id=task_id, user_id=owners[task_id], title=f"t{rng.randrange(5)}", **stamp)

    batches: list[list[Command]] = []
    for n in range(240):
        picked = rng.sample(tasks, rng.randint(2, 8))
        batch: list[Command] = [change(task_id) for task_id in picked]
        if n % 4 == 0:
            fresh = rng.choice(tasks[6:])
            batch.append(
                CreateTask(command_id=uuid4(), issued_at=BASE, task_id=fresh, user_id=owners[fresh], title="new")
            )
        rng.shuffle(batch)
        batches.append(batch)

    applied, deadlocks = await _run_concurrently(sessions, batches, workers=8)

    assert deadlocks == 0, f"{deadlocks} of {len(batches)} batches deadlocked"
    assert applied == len(batches)
    completed = await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[]) AND completed", tasks)
    assert completed > 0  # the completions were really applied, not skipped


async def test_a_change_that_waits_on_a_concurrent_create_sees_the_row_or_retries(sessions, db, users):
    """An update racing its task's create either lands or comes back not-yet; never lost."""
    task_id = uuid4()
    create = CreateTask(command_id=uuid4(), issued_at=BASE, task_id=task_id, user_id=users[0], title="first")
    update = UpdateTask(
        command_id=uuid4(), issued_at=BASE + timedelta(seconds=1), task_id=task_id, user_id=users[0], title="second"
    )

    async def apply(*commands: Command) -> list[Outcome]:
        async with sessions() as session, session.begin():
            return await apply_commands(session, commands)

    created, updated = await asyncio.gather(apply(create), apply(update))
    assert created == [Outcome.APPLIED]
    if updated == [Outcome.TASK_MISSING]:
        assert await apply(update) == [Outcome.APPLIED]
    else:
        assert updated == [Outcome.APPLIED]
    row = await db.fetchrow("SELECT title FROM task WHERE id = $1", task_id)
    assert row["title"] == "second"
