"""`taskline trace`: the story of a command and of a task, from real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from taskline_producer import keys
from taskline_producer.contract import CompleteTask, CreateTask, UpdateTask
from taskline_producer.keys import heartbeat_key, workers_index_key
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms, job_of_command

from worker.pipeline.apply import Outcome
from worker.pipeline.group_commit import GroupCommitter
from worker.tools.trace import trace

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(settings) -> AsyncEngine:
    from worker.store.engine import make_engine

    engine = make_engine(settings)
    yield engine
    await engine.dispose()


async def story(engine: AsyncEngine, redis, queue: str, ident: str):
    async with engine.connect() as conn:
        return await trace(conn, redis, queue, str(ident))


async def test_an_applied_command_names_its_worker_its_transaction_and_its_duplicates(
    settings, sessions, engine, redis, users
):
    """Commands applied together share a transaction, recorded with the worker's id; a second
    delivery is a duplicate and is counted on the command's record."""
    committer = GroupCommitter(sessions, worker_id="host:1:abc")
    now = datetime.now(UTC)
    creates = [
        CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1, title=f"t{n}") for n in range(3)
    ]
    outcomes = await asyncio.gather(*(committer.apply(c) for c in creates))
    assert outcomes == [Outcome.APPLIED] * 3
    assert committer.batches == 1
    assert await committer.apply(creates[0]) is Outcome.DUPLICATE

    found = await story(engine, redis, settings.queue, creates[0].command_id)
    assert found["states"] == ["applied"]
    applied = found["applied"]
    assert (applied["worker_id"], applied["function"], applied["duplicates"]) == ("host:1:abc", "create_task", 1)
    assert applied["transaction"]["commands"] == 3
    assert {o["command_id"] for o in applied["transaction"]["others"]} == {str(c.command_id) for c in creates[1:]}


async def test_a_tasks_story_lists_its_commands_in_issued_order_and_which_won_each_field(
    settings, sessions, engine, redis, db, users
):
    """Every recorded command in issued_at order, the one that set each field last by LWW, the
    earliest completion, and the dead letters whose payload names the task."""
    committer = GroupCommitter(sessions, worker_id="w")
    now = datetime.now(UTC)
    task_id = uuid4()
    create = CreateTask(command_id=uuid4(), issued_at=now, task_id=task_id, user_id=1, title="first")
    rename = UpdateTask(command_id=uuid4(), issued_at=now + timedelta(seconds=3), task_id=task_id, user_id=1, title="b")
    stale = UpdateTask(command_id=uuid4(), issued_at=now + timedelta(seconds=1), task_id=task_id, user_id=1, title="a")
    describe = UpdateTask(
        command_id=uuid4(), issued_at=now + timedelta(seconds=2), task_id=task_id, user_id=1, description="d"
    )
    done_late = CompleteTask(command_id=uuid4(), issued_at=now + timedelta(seconds=5), task_id=task_id, user_id=1)
    done_early = CompleteTask(command_id=uuid4(), issued_at=now + timedelta(seconds=4), task_id=task_id, user_id=1)
    for command in (create, rename, stale, describe, done_late, done_early):  # applied out of order
        assert await committer.apply(command) is Outcome.APPLIED
    await db.execute(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
        " VALUES ($1, 'update_task', $2, 10, 'contract: command.title: too long', 'permanent', 1, $3)",
        "bad-job",
        json.dumps({"a": [{"task_id": str(task_id), "title": "x" * 300}]}).encode(),
        settings.queue,
    )

    found = await story(engine, redis, settings.queue, task_id)
    assert found["kind"] == "task"
    assert (found["task"]["title"], found["task"]["description"], found["task"]["completed"]) == ("b", "d", True)
    order = [c["command_id"] for c in found["commands"]]
    assert order == [str(c.command_id) for c in (create, stale, describe, rename, done_early, done_late)]
    won = {c["command_id"]: c["won"] for c in found["commands"]}
    assert won[str(rename.command_id)] == ["title"]
    assert won[str(describe.command_id)] == ["description"]
    assert won[str(done_early.command_id)] == ["completed_at"]
    assert won[str(stale.command_id)] == []
    assert won[str(done_late.command_id)] == []
    assert [d["job_id"] for d in found["dead_letters"]] == ["bad-job"]
    assert "too long" in found["dead_letters"][0]["reason"]


async def test_a_retrying_command_says_why_and_when_and_a_crashed_claim_says_it_waits(settings, engine, redis, users):
    """A job deferred after transient failures shows its next try and the count; a job whose claim
    names a worker that stopped beating is waiting for the claim to expire."""
    command = UpdateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title="x")
    job_id = str(command.command_id)
    later = epoch_ms() + 60_000
    await redis.eval(ENQUEUE_SCRIPT, 1, settings.queue, later, DEFAULT_JOB_TTL_MS, job_id, job_of_command(command, 0))
    await redis.set(keys.retry_key(job_id), 3)
    await redis.set(keys.transient_key(job_id), 2)
    found = await story(engine, redis, settings.queue, job_id)
    assert found["states"] == ["retrying"]
    assert found["queue"]["transient_failures"] == 2
    assert "2 transient failure(s)" in found["queue"]["why"]
    assert 50 < found["queue"]["runs_in_s"] <= 60
    await redis.delete(keys.transient_key(job_id))
    not_yet = await story(engine, redis, settings.queue, job_id)
    assert not_yet["queue"]["why"] == f"waiting for task {command.task_id} to exist (not yet)"

    # Claimed by a worker whose last heartbeat is 10 s old (kept for its claims), not in the queue.
    await redis.zrem(settings.queue, job_id)
    document = {"worker_id": "dead:1:x", "interval_s": 1.0, "key_ttl_ms": 30_000, "running_job_ids": [job_id]}
    await redis.set(heartbeat_key(settings.queue, "dead:1:x"), json.dumps(document), px=20_000)
    await redis.zadd(workers_index_key(settings.queue), {"dead:1:x": 1})
    await redis.set(keys.in_progress_key(job_id), "dead:1:x", px=12_000)
    waiting = await story(engine, redis, settings.queue, job_id)
    assert waiting["states"] == ["waiting for its claim to expire (its worker stopped beating)"]
    assert waiting["claim"]["worker_id"] == "dead:1:x"
    assert 10 < waiting["claim"]["expires_in_s"] <= 12


async def test_an_unknown_id_has_no_story(settings, engine, redis):
    assert await story(engine, redis, settings.queue, uuid4()) is None
    assert await story(engine, redis, settings.queue, "not-a-uuid") is None


async def test_the_outcome_a_producer_asked_for_is_part_of_the_story(settings, engine, redis):
    """A command whose job asked for outcomes shows the outcome the producer reads; when only the
    outcome is left (the processed record purged), that is the story."""
    command_id = str(uuid4())
    await redis.set(keys.outcome_key(command_id), json.dumps({"state": "applied", "command_id": command_id}))
    found = await story(engine, redis, settings.queue, command_id)
    assert found["outcome"]["state"] == "applied"
    assert found["states"] == ["outcome: applied"]
