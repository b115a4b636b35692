"""Failure paths through the real worker loop: arq's own give-ups, transient budgets, bulk jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import CompleteTask, CreateTask, TaskProducer, UpdateTask
from taskline_producer.wire import envelope, epoch_ms

from tests.conftest import run_burst
from worker.pipeline.dead_letters import record_dead_letter

pytestmark = pytest.mark.integration


async def _dead_letter(db: Any, job_id: str) -> Any:
    return await db.fetchrow("SELECT * FROM dead_letter WHERE job_id = $1", job_id)


async def test_a_job_whose_key_expired_becomes_a_dead_letter(settings, redis, db):
    """A queued id whose arq:job: key expired is dead-lettered with the reason, not dropped."""
    job_id = str(uuid4())
    await redis.zadd(settings.queue, {job_id: epoch_ms()})

    await run_burst(settings)

    letter = await _dead_letter(db, job_id)
    assert letter is not None
    assert "expired" in letter["reason"]
    assert letter["payload"] is None
    assert await redis.zcard(settings.queue) == 0


async def test_a_job_past_arqs_tries_becomes_a_dead_letter_with_its_payload(settings, redis, db, users):
    """A job that used up arq's tries (say, by crashing workers) is dead-lettered with its payload."""
    from worker.arq_seam.wiring import arq_max_tries, retry_policy

    command = CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title="x")
    job_id = str(command.command_id)
    raw = envelope("create_task", command.model_dump(mode="json"), epoch_ms())
    await redis.set(f"arq:job:{job_id}", raw, px=60_000)
    await redis.set(f"arq:retry:{job_id}", arq_max_tries(retry_policy(settings)))
    await redis.zadd(settings.queue, {job_id: epoch_ms()})

    await run_burst(settings)

    letter = await _dead_letter(db, job_id)
    assert letter is not None
    assert "gave up after" in letter["reason"]
    assert "tries" in letter["reason"]
    assert bytes(letter["payload"]) == raw
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", command.task_id) == 0


async def test_transient_failures_are_retried_then_dead_lettered(settings, redis, db, users):
    """A command that keeps hitting a transient error is tried TASKLINE_TRANSIENT_TRIES times, then dead-lettered."""
    settings = settings.model_copy(update={"transient_tries": 3})
    producer = TaskProducer(redis, queue=settings.queue)
    receipt = await producer.create_task(user_id=1, title="never lands")

    async def broken_apply(command: Any) -> Any:
        raise ConnectionRefusedError("database is down (simulated)")

    worker_ctx: dict[str, Any] = {}

    async def sabotage(ctx: dict[str, Any]) -> None:
        ctx["runtime"].committer.apply = broken_apply
        worker_ctx.update(ctx)

    worker = await run_burst(settings, on_job_start=sabotage)

    letter = await _dead_letter(db, str(receipt.command_id))
    assert letter is not None
    assert letter["attempts"] == 3
    assert letter["category"] == "transient"
    assert "gave up after 3 transient failures (3 tries)" in letter["reason"]
    assert worker.jobs_retried == 2
    assert await redis.exists(f"taskline:transient:{receipt.command_id}") == 0


async def test_earlier_tries_do_not_use_up_the_transient_budget(settings, redis, db, users):
    """A job that already had many tries (not-yet retries, crashed workers) still gets its full
    transient budget: the budget counts transient failures, not arq's try number."""
    settings = settings.model_copy(update={"transient_tries": 3})
    producer = TaskProducer(redis, queue=settings.queue)
    receipt = await producer.create_task(user_id=1, title="late and unlucky")
    await redis.set(f"arq:retry:{receipt.command_id}", 15)  # tries 1–15 already happened

    async def broken_apply(command: Any) -> Any:
        raise ConnectionRefusedError("database is down (simulated)")

    async def sabotage(ctx: dict[str, Any]) -> None:
        ctx["runtime"].committer.apply = broken_apply

    worker = await run_burst(settings, on_job_start=sabotage)

    letter = await _dead_letter(db, str(receipt.command_id))
    assert letter is not None
    assert letter["attempts"] == 18
    assert "gave up after 3 transient failures (18 tries)" in letter["reason"]
    assert worker.jobs_retried == 2
    assert await redis.exists(f"taskline:transient:{receipt.command_id}") == 0


async def test_a_bulk_job_applies_its_valid_commands_and_sorts_out_the_rest(settings, redis, db, users):
    """In one apply_commands job, valid commands land, invalid ones are dead-lettered one by one,
    and an update whose task comes later is requeued on its own and still lands."""
    producer = TaskProducer(redis, queue=settings.queue)
    now = datetime.now(UTC)
    good = CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1, title="bulk ok")
    late_task = uuid4()
    waits = UpdateTask(
        command_id=uuid4(), issued_at=now + timedelta(seconds=1), task_id=late_task, user_id=2, title="after its create"
    )
    stranger = CompleteTask(command_id=uuid4(), issued_at=now, task_id=good.task_id, user_id=3)
    receipt = await producer.send_bulk([good, waits, stranger])
    invalid_id = str(uuid4())
    items = [{"function": "create_task", "command": {"command_id": invalid_id, "user_id": 1.5}}]
    await redis.set("arq:job:bulk-bad", envelope("apply_commands", items, epoch_ms()), px=60_000)
    await redis.zadd(settings.queue, {"bulk-bad": epoch_ms()})

    late = CreateTask(command_id=uuid4(), issued_at=now, task_id=late_task, user_id=2, title="created late")
    due_later = epoch_ms() + 500  # the create becomes runnable only after the bulk job ran
    await redis.set(f"arq:job:{late.command_id}", envelope("create_task", late.model_dump(mode="json"), due_later))
    await redis.zadd(settings.queue, {str(late.command_id): due_later})

    await run_burst(settings)

    assert receipt.queued
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", good.task_id) == "bulk ok"
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", late_task) == "after its create"
    forbidden = await _dead_letter(db, str(stranger.command_id))
    assert forbidden is not None
    assert "another user" in forbidden["reason"]
    invalid = await _dead_letter(db, invalid_id)
    assert invalid is not None
    assert "user_id" in invalid["reason"]
    assert await db.fetchval("SELECT completed FROM task WHERE id = $1", good.task_id) is False
    assert await _dead_letter(db, str(waits.command_id)) is None


async def test_writing_a_dead_letter_is_retried_while_the_database_is_away(settings, db):
    """record_dead_letter tries again after failures and writes the row once the database answers."""
    from worker.store.engine import make_engine, make_sessions

    engine = make_engine(settings)
    real = make_sessions(engine)
    failures = {"left": 2}

    def flaky_sessions() -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionRefusedError("database restarting (simulated)")
        return real()

    job_id = f"dl-{uuid4()}"
    try:
        await record_dead_letter(
            flaky_sessions,  # type: ignore[arg-type]
            job_id=job_id,
            function="create_task",
            payload=b"{}",
            reason="test",
            category="permanent",
            attempts=1,
            queue=settings.queue,
            max_payload_bytes=settings.max_payload_bytes,
        )
    finally:
        await engine.dispose()
    assert failures["left"] == 0
    assert (await _dead_letter(db, job_id))["reason"] == "test"


async def test_bulk_jobs_are_decoded_and_applied_a_few_at_a_time(settings, redis, db, users):
    """TASKLINE_BULK_CONCURRENCY bounds how many bulk jobs (and their commands) a worker holds
    at once; single-command jobs are not held back, and every command still lands."""
    settings = settings.model_copy(update={"bulk_concurrency": 2})
    producer = TaskProducer(redis, queue=settings.queue)
    now = datetime.now(UTC)
    bulks = [
        [
            CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1, title=f"b{j}-{i}")
            for i in range(20)
        ]
        for j in range(8)
    ]
    for commands in bulks:
        await producer.send_bulk(commands)
    singles = [await producer.create_task(user_id=2, title=f"single {i}") for i in range(5)]
    running = 0
    most = 0
    applied_singles = 0

    async def on_start(ctx: dict[str, Any]) -> None:
        runtime = ctx["runtime"]
        if getattr(runtime.committer, "_watched", False):
            return
        runtime.committer._watched = True
        apply_many, apply = runtime.committer.apply_many, runtime.committer.apply

        async def counted_apply_many(commands: Any, signed_by: str | None = None) -> Any:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                await asyncio.sleep(0.05)  # long enough for the other claimed bulk jobs to pile up
                return await apply_many(commands, signed_by)
            finally:
                running -= 1

        async def counted_apply(command: Any, signed_by: str | None = None, **options: Any) -> Any:
            nonlocal applied_singles
            applied_singles += 1
            return await apply(command, signed_by, **options)

        runtime.committer.apply_many = counted_apply_many
        runtime.committer.apply = counted_apply

    await run_burst(settings, on_job_start=on_start)

    assert most == 2
    assert applied_singles == len(singles)
    task_ids = [c.task_id for commands in bulks for c in commands] + [r.task_id for r in singles]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == len(task_ids)


async def test_an_oversized_job_is_dead_lettered_without_being_loaded(settings, redis, db):
    """A job value larger than any job may be (here 3 MiB against a 1 MiB bulk limit) becomes a
    dead letter naming its size; the worker received only its first bytes (the claim script
    measures it with STRLEN), so the dead letter holds those."""
    head_bytes = 4096  # worker.arq_seam.claim.OVERSIZED_HEAD_BYTES, written out so this runs against any version
    job_id = str(uuid4())
    huge = envelope("create_task", {"title": "x" * (3 * 1024 * 1024)}, epoch_ms())
    await redis.set(f"arq:job:{job_id}", huge)
    await redis.zadd(settings.queue, {job_id: epoch_ms()})

    await run_burst(settings)

    letter = await _dead_letter(db, job_id)
    assert letter is not None
    assert f"{len(huge)} bytes in Redis" in letter["reason"]
    assert letter["payload"] == huge[:head_bytes]
    assert await redis.zcard(settings.queue) == 0
