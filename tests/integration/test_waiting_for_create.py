"""Commands that arrive before their task wait in the worker for its create (the group committer's
waiting room, worker/pipeline/waiting_room.py), instead of going back to Redis as not-yet retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from taskline_producer import TaskProducer
from taskline_producer.contract import CompleteTask, CreateTask, UpdateTask

from tests.conftest import run_burst, wait_for
from worker.pipeline.apply import Outcome
from worker.pipeline.group_commit import GroupCommitter

pytestmark = pytest.mark.integration


def _triple(user_id: int = 1) -> tuple[CreateTask, UpdateTask, CompleteTask]:
    now, task_id = datetime.now(UTC), uuid4()
    return (
        CreateTask(command_id=uuid4(), issued_at=now, task_id=task_id, user_id=user_id, title="first"),
        UpdateTask(
            command_id=uuid4(), issued_at=now + timedelta(seconds=1), task_id=task_id, user_id=user_id, title="second"
        ),
        CompleteTask(command_id=uuid4(), issued_at=now + timedelta(seconds=2), task_id=task_id, user_id=user_id),
    )


async def test_an_update_before_its_create_waits_for_it_and_is_applied_once(sessions, db, users):
    """The update and the completion wait (their jobs free their slots), the create arrives, and
    all three are applied: the waiting ones in the create's transaction or the next."""
    create, update, complete = _triple()
    committer = GroupCommitter(sessions, hold_s=5.0)
    slots: list[int] = []
    committer.holding = slots.append
    waiting = [asyncio.create_task(committer.apply(update)), asyncio.create_task(committer.apply(complete))]
    await wait_for(lambda: committer.held >= 2, timeout=5, interval=0.01)
    assert not any(task.done() for task in waiting)
    assert slots == [-1, -1]

    async with asyncio.timeout(5):
        assert await committer.apply(create) is Outcome.APPLIED
        assert await asyncio.gather(*waiting) == [Outcome.APPLIED, Outcome.APPLIED]
    await asyncio.sleep(0)  # the futures' done callbacks
    assert sorted(slots) == [-1, -1, 1, 1]
    row = await db.fetchrow("SELECT title, completed FROM task WHERE id = $1", create.task_id)
    assert (row["title"], row["completed"]) == ("second", True)
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE task_id = $1", create.task_id) == 3


async def test_a_task_created_by_another_worker_releases_the_commands_waiting_for_it(sessions, db, users):
    """A create applied elsewhere (another committer: another worker) is found by the periodic
    check, and the waiting update is applied well before its hold ends."""
    create, update, _ = _triple()
    here = GroupCommitter(sessions, hold_s=30.0, recheck_s=0.05)
    elsewhere = GroupCommitter(sessions)
    waiting = asyncio.create_task(here.apply(update))
    await wait_for(lambda: here.held >= 1, timeout=5, interval=0.01)
    async with asyncio.timeout(5):
        assert await elsewhere.apply(create) is Outcome.APPLIED
        assert await waiting is Outcome.APPLIED
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", create.task_id) == "second"


async def test_a_command_whose_task_never_comes_gets_the_not_yet_outcome_after_its_hold(sessions, db, users):
    """After `hold_s` the command is tried once more, and with its task still missing its job gets
    TASK_MISSING (a not-yet retry through Redis, as without the hold); nothing stays recorded."""
    _, update, _ = _triple()
    committer = GroupCommitter(sessions, hold_s=0.3, recheck_s=0.05)
    async with asyncio.timeout(5):
        assert await committer.apply(update) is Outcome.TASK_MISSING
    assert committer.held == 1
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", update.command_id) == 0


async def test_without_a_hold_a_command_before_its_create_is_not_yet_at_once(sessions, users):
    """hold_s = 0 (TASKLINE_WAIT_FOR_CREATE=0): the old behaviour, TASK_MISSING on the first try."""
    _, update, _ = _triple()
    committer = GroupCommitter(sessions)
    async with asyncio.timeout(5):
        assert await committer.apply(update) is Outcome.TASK_MISSING
    assert committer.held == 0


async def test_a_stream_sent_back_to_back_drains_without_not_yet_retries(settings, redis, db, users):
    """create → update → complete for 60 tasks in one send_many, drained by a worker: every
    command applied once, and not one job went back to the queue as a retry."""
    commands = [command for _ in range(60) for command in _triple(user_id=2)]
    await TaskProducer(redis, queue=settings.queue).send_many(commands)

    worker = await run_burst(settings)

    assert worker.jobs_retried == 0
    assert worker.jobs_complete == len(commands)
    task_ids = list({command.task_id for command in commands})
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE task_id = ANY($1)", task_ids) == 180
    finished = "SELECT count(*) FROM task WHERE id = ANY($1) AND completed AND title = 'second'"
    assert await db.fetchval(finished, task_ids) == 60
