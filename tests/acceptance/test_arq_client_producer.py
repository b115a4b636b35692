"""Producers that use arq's own client are a supported way in (docs/contract.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from arq.connections import RedisSettings, create_pool
from taskline_producer import keys
from taskline_producer.contract import CompleteTask, CreateTask, dumps

from tests.acceptance.test_worker_process import started
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


async def test_commands_enqueued_with_arqs_enqueue_job_are_applied_by_a_real_worker(settings, start_worker, db, users):
    """`ArqRedis.enqueue_job(name, command, _job_id=command_id)` with a JSON serializer: applied
    once; a second enqueue while queued is refused by arq; one after it was applied is a no-op."""
    worker = start_worker()
    await started(worker)
    pool = await create_pool(
        RedisSettings.from_dsn(settings.redis_url),
        job_serializer=dumps,
        job_deserializer=json.loads,
        default_queue_name=settings.queue,
    )
    try:
        create = CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=3, title="arq")
        complete = CompleteTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=create.task_id, user_id=3)
        for command in (create, complete):
            job = await pool.enqueue_job(
                command.function, command.model_dump(mode="json"), _job_id=str(command.command_id)
            )
            assert job is not None

        async def completed() -> bool:
            return bool(await db.fetchval("SELECT completed FROM task WHERE id = $1", create.task_id))

        await wait_for(completed, timeout=30)

        async def jobs_gone() -> bool:  # the worker removes a finished job's key just after its commit
            return not await pool.exists(*(keys.job_key(str(c.command_id)) for c in (create, complete)))

        await wait_for(jobs_gone, timeout=30)
        again = await pool.enqueue_job(create.function, create.model_dump(mode="json"), _job_id=str(create.command_id))
        assert again is not None  # keep_result=0: arq keeps no result, so it takes the job again

        async def drained() -> bool:
            return await pool.zcard(settings.queue) == 0

        await wait_for(drained, timeout=30)
        assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", create.task_id) == 1
        assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0
        ids = [create.command_id, complete.command_id]
        assert await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = ANY($1)", ids) == 2
    finally:
        await pool.aclose()
