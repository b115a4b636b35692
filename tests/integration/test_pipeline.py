"""The pipeline end to end, in process: producer → Redis → arq worker → PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from taskline_producer import TaskProducer
from taskline_producer.contract import CreateTask

from tests.conftest import run_burst
from worker.pipeline.apply import Outcome
from worker.pipeline.group_commit import GroupCommitter

pytestmark = pytest.mark.integration


async def test_commands_from_the_producer_client_are_applied(settings, redis, db, users):
    """create, update and complete sent through TaskProducer end up in the task row."""
    producer = TaskProducer(redis, queue=settings.queue)
    now = datetime.now(UTC)
    created = await producer.create_task(user_id=1, title="Write tests", issued_at=now)
    await producer.update_task(
        task_id=created.task_id, user_id=1, description="today", issued_at=now + timedelta(seconds=1)
    )
    await producer.complete_task(task_id=created.task_id, user_id=1, issued_at=now + timedelta(seconds=2))

    await run_burst(settings)

    row = await db.fetchrow("SELECT * FROM task WHERE id = $1", created.task_id)
    assert (row["title"], row["description"], row["completed"]) == ("Write tests", "today", True)
    assert row["completed_at"] == now + timedelta(seconds=2)
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE task_id = $1", created.task_id) == 3


async def test_a_resent_command_is_refused_at_enqueue_and_applied_once(settings, redis, db, users):
    """The job id is the command id: a second send while queued is refused; the row is written once."""
    producer = TaskProducer(redis, queue=settings.queue)
    command_id = uuid4()
    first = await producer.create_task(user_id=2, title="Once", command_id=command_id)
    second = await producer.create_task(user_id=2, title="Once", command_id=command_id, task_id=first.task_id)
    assert (first.queued, second.queued) == (True, False)

    await run_burst(settings)

    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", first.task_id) == 1


async def test_commands_applied_one_after_another_never_wait_for_a_flusher_that_just_finished(sessions, users):
    """Each apply() returns on its own: a command added while the previous flusher is finishing
    (done, but not yet out of the running set) still gets a flusher of its own."""
    committer = GroupCommitter(sessions)
    now = datetime.now(UTC)
    for n in range(10):
        command = CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1, title=f"one by one {n}")
        async with asyncio.timeout(5):
            assert await committer.apply(command) is Outcome.APPLIED


async def test_two_concurrent_commit_flushers_apply_every_command_once_in_last_writer_order(settings, redis, db, users):
    """With TASKLINE_COMMIT_CONCURRENCY=2, group-commit transactions overlap; every command is still
    applied once, and each task ends as the last writer by issued_at left it."""
    import random

    from tests.acceptance.test_crashes import assert_applied_exactly_once, make_plan

    commands = make_plan(random.Random(5), tasks=80)
    random.Random(6).shuffle(commands)
    await TaskProducer(redis, queue=settings.queue).send_many(commands)

    worker = await run_burst(settings.model_copy(update={"commit_concurrency": 2}))

    assert worker.jobs_complete == len(commands)
    await assert_applied_exactly_once(db, commands, settings.queue)
