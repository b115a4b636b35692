"""Outcomes through the real worker loop: each state a producer can wait for, single and bulk,
and nothing written for jobs that did not ask."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import CompleteTask, CreateTask, TaskProducer, UpdateTask, keys
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms

from tests.conftest import run_burst, taskline, wait_for

pytestmark = pytest.mark.integration

TTL = 600


def created(user_id: int = 1, **overrides: Any) -> CreateTask:
    data: dict[str, Any] = {
        "command_id": uuid4(),
        "issued_at": datetime.now(UTC) - timedelta(seconds=30),
        "task_id": uuid4(),
        "user_id": user_id,
        "title": "outcomes",
    }
    data.update(overrides)
    return CreateTask(**data)


@contextlib.asynccontextmanager
async def burst_in_background(settings: Any) -> AsyncIterator[None]:
    """A burst worker running while the body runs; it stops once the queue is empty. If the body
    fails, the worker is cancelled rather than waited for (a not-yet retry would keep it going)."""
    worker = asyncio.create_task(run_burst(settings))
    try:
        yield
    except BaseException:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        raise
    await asyncio.wait_for(worker, timeout=60)


async def test_a_waiting_producer_learns_its_command_was_applied(settings, redis, users):
    """create_task(outcome_ttl=...) → receipt.outcome() returns `applied` once the worker has run it,
    and the outcome is kept for outcome_ttl seconds."""
    producer = TaskProducer(redis, queue=settings.queue)
    receipt = await producer.create_task(user_id=1, title="wait for me", outcome_ttl=TTL)
    assert (await receipt.status()).state == "queued"
    waiter = asyncio.create_task(receipt.outcome(timeout=60))
    await run_burst(settings)
    outcome = await waiter
    assert (outcome.state, outcome.reason, outcome.job_id) == ("applied", None, str(receipt.command_id))
    assert outcome.at is not None
    assert abs((datetime.now(UTC) - outcome.at).total_seconds()) < 60
    assert TTL - 60 <= await redis.ttl(keys.outcome_key(str(receipt.command_id))) <= TTL


async def test_a_command_sent_again_after_it_took_effect_is_a_duplicate(settings, redis, users):
    """The same command_id queued again once the first job is gone: its waiter, started before
    any worker runs the re-send, does not take the first send's `applied` for its answer; it gets
    the re-send's own outcome, `duplicate`, written for the re-send's job."""
    producer = TaskProducer(redis, queue=settings.queue)
    command = created()
    first = await producer.send(command, outcome_ttl=TTL)
    await run_burst(settings)
    applied = await first.outcome(timeout=5)
    assert applied.state == "applied"
    assert applied.enqueued_at_ms == first.sent_at_ms
    again = await producer.send(command, outcome_ttl=TTL)
    assert again.queued
    assert again.sent_at_ms is not None
    assert first.sent_at_ms is not None
    assert again.sent_at_ms > first.sent_at_ms  # a worker's burst lies between them
    assert (await again.status()).state == "queued"  # not the first send's `applied`
    waiter = asyncio.create_task(again.outcome(timeout=60))
    await run_burst(settings)
    duplicate = await waiter
    assert duplicate.state == "duplicate"
    assert duplicate.enqueued_at_ms == again.sent_at_ms


async def test_a_command_id_used_again_for_another_command_is_a_dead_letter_that_says_so(settings, redis, db, users):
    """A complete_task sent under an applied create_task's command_id is refused: a permanent dead
    letter (and outcome) saying the id was reused, the task untouched, the create's record left as
    it was; a redelivery of the create itself stays a duplicate, counted on that record."""
    producer = TaskProducer(redis, queue=settings.queue)
    create = created()
    await producer.send(create, outcome_ttl=TTL)
    await run_burst(settings)
    impostor = CompleteTask(command_id=create.command_id, issued_at=create.issued_at, task_id=create.task_id, user_id=1)
    sent = await producer.send(impostor, outcome_ttl=TTL)
    assert sent.queued
    await run_burst(settings)
    outcome = await sent.outcome(timeout=5)
    assert outcome.state == "dead_letter"
    assert outcome.reason is not None
    assert outcome.reason.startswith("command_id reused: this command_id was already applied for a different command")
    row = await db.fetchrow(
        "SELECT function, category, reason FROM dead_letter WHERE job_id = $1", str(create.command_id)
    )
    assert (row["function"], row["category"]) == ("complete_task", "permanent")
    assert row["reason"] == outcome.reason
    record = await db.fetchrow(
        "SELECT function, duplicates FROM processed_command WHERE command_id = $1", create.command_id
    )
    assert (record["function"], record["duplicates"]) == ("create_task", 0)
    assert await db.fetchval("SELECT completed FROM task WHERE id = $1", create.task_id) is False

    again = await producer.send(create, outcome_ttl=TTL)  # the create itself, sent again: a no-op
    await run_burst(settings)
    assert (await again.outcome(timeout=5)).state == "duplicate"
    assert await db.fetchval("SELECT duplicates FROM processed_command WHERE command_id = $1", create.command_id) == 1


async def test_a_command_id_used_again_with_other_fields_is_refused_too(settings, redis, db, users):
    """The same function with another title under an applied create's id is refused the same way;
    the task keeps the first title."""
    producer = TaskProducer(redis, queue=settings.queue)
    create = created()
    await producer.send(create)
    await run_burst(settings)
    changed = await producer.send(create.model_copy(update={"title": "another title"}), outcome_ttl=TTL)
    await run_burst(settings)
    outcome = await changed.outcome(timeout=5)
    assert outcome.state == "dead_letter"
    assert "command_id reused" in (outcome.reason or "")
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", create.task_id) == "outcomes"


async def test_a_dead_lettered_command_reports_the_reason(settings, redis, db, users):
    """A conflicting create_task is dead-lettered; the waiting producer gets `dead_letter` and the reason."""
    producer = TaskProducer(redis, queue=settings.queue)
    original = created()
    await producer.send(original)
    await run_burst(settings)
    clash = await producer.send(created(task_id=original.task_id, title="clash"), outcome_ttl=TTL)
    await run_burst(settings)
    outcome = await clash.outcome(timeout=5)
    letter = await db.fetchrow("SELECT reason FROM dead_letter WHERE job_id = $1", str(clash.command_id))
    assert outcome.state == "dead_letter"
    assert outcome.reason == letter["reason"]
    assert outcome.reason.startswith("conflict")


async def test_a_command_that_waits_for_its_task_is_retrying_then_applied(settings, redis, users):
    """An update before its task exists: `retrying` (with the reason and when), then `applied` once the
    create_task lands. The waiter is not woken by `retrying`."""
    producer = TaskProducer(redis, queue=settings.queue)
    create = created()
    update = await producer.update_task(task_id=create.task_id, user_id=1, title="renamed", outcome_ttl=TTL)
    waiter = asyncio.create_task(update.outcome(timeout=60))
    async with burst_in_background(settings):

        async def retrying() -> Any:
            status = await update.status()
            return status if status.state == "retrying" else None

        status = await wait_for(retrying, timeout=30)
        assert (status.reason or "").startswith("task not found")
        assert status.next_try_at is not None
        assert status.next_try_at > status.at
        assert not waiter.done()
        await producer.send(create)
        outcome = await waiter
        assert outcome.state == "applied"


async def test_every_command_of_a_bulk_job_gets_its_own_outcome(settings, redis, db, users):
    """send_bulk(outcome_ttl=...): applied, duplicate, dead-lettered and retried-then-applied commands
    of one apply_commands job, each under its own command_id."""
    producer = TaskProducer(redis, queue=settings.queue)
    earlier = created()
    await producer.send(earlier)
    await run_burst(settings)
    later = created()
    fresh = created()
    clash = created(task_id=earlier.task_id, title="clash")
    waits = UpdateTask(
        command_id=uuid4(), issued_at=datetime.now(UTC), task_id=later.task_id, user_id=1, title="after its create"
    )
    receipt = await producer.send_bulk([fresh, earlier, clash, waits], outcome_ttl=TTL)
    waiter = asyncio.create_task(receipt.outcomes(timeout=60))
    async with burst_in_background(settings):

        async def retrying() -> bool:
            return (await producer.status(waits.command_id, job_id=receipt.job_id)).state == "retrying"

        await wait_for(retrying, timeout=30)
        await producer.send(later)
        outcomes = await waiter
    states = {command_id: outcome.state for command_id, outcome in outcomes.items()}
    assert states == {
        fresh.command_id: "applied",
        earlier.command_id: "duplicate",
        clash.command_id: "dead_letter",
        waits.command_id: "applied",
    }
    assert outcomes[clash.command_id].reason.startswith("conflict")
    assert outcomes[fresh.command_id].job_id == receipt.job_id
    assert outcomes[waits.command_id].job_id == str(waits.command_id)  # applied by its requeued job
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", later.task_id) == "after its create"


async def test_jobs_that_did_not_ask_leave_no_outcome(settings, redis, db, users):
    """Without outcome_ttl the worker writes nothing under taskline:outcome:, whatever the job's fate."""
    producer = TaskProducer(redis, queue=settings.queue)
    commands = [created(), created(), created()]
    clash = created(task_id=commands[0].task_id, title="clash")
    await producer.send(commands[0])
    await producer.send(clash)
    await producer.send_bulk(commands[1:])
    await run_burst(settings)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = $1", str(clash.command_id)) == 1
    for command in [*commands, clash]:
        command_id = str(command.command_id)
        assert await redis.exists(keys.outcome_key(command_id), keys.outcome_done_key(command_id)) == 0


async def test_a_worker_held_at_version_1_dead_letters_a_version_2_job(settings, redis, db, users):
    """TASKLINE_CONTRACT_VERSION=1: a job that asked for outcomes is dead-lettered, saying why and what
    to do; a version-1 job is applied as before. Replayed to a version-2 worker, the dead letter is
    applied, and a producer waiting after the replay sees that, not the old dead letter."""
    held = settings.model_copy(update={"contract_version": 1})
    producer = TaskProducer(redis, queue=settings.queue)
    old_style = await producer.create_task(user_id=1, title="version 1")
    new_style = await producer.create_task(user_id=1, title="version 2", outcome_ttl=TTL)
    await run_burst(held)
    letter = await db.fetchrow("SELECT * FROM dead_letter WHERE job_id = $1", str(new_style.command_id))
    assert letter["reason"].startswith("contract version 2 is newer than this worker accepts (1..1): upgrade")
    assert (await new_style.status()).state == "dead_letter"
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", old_style.task_id) == 1
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", new_style.task_id) == 0
    replayed = await taskline(settings, "dead-letters", "replay", str(new_style.command_id))
    assert replayed.returncode == 0, replayed.stderr
    assert (await new_style.status()).state == "queued"  # the replay cleared the dead-letter outcome
    waiter = asyncio.create_task(new_style.outcome(timeout=60))
    await run_burst(settings)
    assert (await waiter).state == "applied"
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", new_style.task_id) == 1


async def test_a_command_refused_by_the_decoder_reports_why_when_it_asked(settings, redis, db):
    """A job written by hand (no client-side validation) with an invalid command and outcome_ttl:
    its outcome is the dead letter, with the decoder's reason naming the member."""
    command = created().model_dump(mode="json")
    command["title"] = "x" * 201
    (queued,) = await redis.eval(
        ENQUEUE_SCRIPT,
        1,
        settings.queue,
        epoch_ms(),
        DEFAULT_JOB_TTL_MS,
        command["command_id"],
        envelope("create_task", command, epoch_ms(), {"contract": 2, "outcome_ttl": TTL}),
    )
    assert queued == 1
    await run_burst(settings)
    outcome = await TaskProducer(redis, queue=settings.queue).outcome(command["command_id"], timeout=5)
    letter = await db.fetchrow("SELECT reason FROM dead_letter WHERE job_id = $1", command["command_id"])
    assert outcome.state == "dead_letter"
    assert outcome.reason == letter["reason"]
    assert "title" in outcome.reason
