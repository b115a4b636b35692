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

from worker.tools.queue_view import queue_jobs

pytestmark = pytest.mark.integration


async def _enqueue(redis, queue: str, score: int) -> UpdateTask:
    command = UpdateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title="x")
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
