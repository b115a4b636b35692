"""The Queue view: the jobs themselves, ready, deferred and running, without a keyspace scan."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taskline_producer import keys
from taskline_producer.contract import UpdateTask
from taskline_producer.keys import heartbeat_key, workers_index_key
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms, job_of_command

from worker.tools.queue_view import SCAN_MAX, QueueFilter, queue_jobs, queue_page

pytestmark = pytest.mark.integration


async def _enqueue(redis, queue: str, score: int, user_id: int = 1) -> UpdateTask:
    command = UpdateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=user_id, title="x")
    job_id = str(command.command_id)
    await redis.eval(ENQUEUE_SCRIPT, 1, queue, score, DEFAULT_JOB_TTL_MS, job_id, job_of_command(command, 0))
    return command


async def test_the_queue_view_lists_ready_deferred_and_running_jobs_with_their_tries(settings, redis):
    queue = settings.queue
    ready = await _enqueue(redis, queue, epoch_ms() - 1000)
    deferred = await _enqueue(redis, queue, epoch_ms() + 30_000)
    await redis.set(keys.retry_key(str(deferred.command_id)), 4)
    await redis.set(keys.transient_key(str(deferred.command_id)), 3)
    running = await _enqueue(redis, queue, epoch_ms())
    await redis.zrem(queue, str(running.command_id))  # claimed: out of the queue, in a worker
    document = {
        "worker_id": "w:1:a",
        "interval_s": 5.0,
        "key_ttl_ms": 15_000,
        "running_job_ids": [str(running.command_id)],
    }
    await redis.set(heartbeat_key(queue, "w:1:a"), json.dumps(document), px=15_000)
    await redis.zadd(workers_index_key(queue), {"w:1:a": 1})

    jobs = await queue_jobs(redis, queue)
    assert [j["job_id"] for j in jobs["ready"]] == [str(ready.command_id)]
    assert jobs["ready"][0]["function"] == "update_task"
    assert jobs["ready"][0]["task_id"] == str(ready.task_id)
    (later,) = jobs["deferred"]
    assert (later["job_id"], later["tries"], later["transient_failures"]) == (str(deferred.command_id), 4, 3)
    assert 25 < later["runs_in_s"] <= 30
    assert [(j["job_id"], j["worker_id"]) for j in jobs["running"]] == [(str(running.command_id), "w:1:a")]


async def test_queue_pages_follow_each_other_and_filters_read_a_bounded_stretch(settings, redis):
    """Pages of 10 cover the ready jobs in queue order without overlap; a user filter finds that
    user's jobs only; a task filter finds its one job; a filter matching nothing stops after
    looking at SCAN_MAX jobs at most and offers the next stretch."""
    queue = settings.queue
    now = epoch_ms() - 10_000
    commands = [await _enqueue(redis, queue, now + n, user_id=1 + n % 5) for n in range(35)]
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await queue_page(redis, queue, QueueFilter(state="ready"), offset=offset, limit=10)
        seen += [job["job_id"] for job in page.jobs]
        offset = page.next_offset
    assert seen == [str(c.command_id) for c in commands]
    user_three = await queue_page(redis, queue, QueueFilter(state="ready", user_id="3"), limit=50)
    assert [j["job_id"] for j in user_three.jobs] == [str(c.command_id) for c in commands if c.user_id == 3]
    assert user_three.next_offset is None
    one = await queue_page(redis, queue, QueueFilter(state="ready", task_id=str(commands[20].task_id)))
    assert [j["job_id"] for j in one.jobs] == [str(commands[20].command_id)]
    deferred = await queue_page(redis, queue, QueueFilter(state="deferred"))
    assert deferred.jobs == []
    assert deferred.next_offset is None

    pipe = redis.pipeline(transaction=False)
    for n in range(SCAN_MAX + 100):
        pipe.zadd(queue, {f"filler-{n}": now + 100 + n})
    await pipe.execute()
    nothing = await queue_page(redis, queue, QueueFilter(state="ready", function="complete_task"))
    assert nothing.jobs == []
    assert nothing.looked_at == SCAN_MAX
    assert nothing.next_offset == SCAN_MAX
