"""A rolling upgrade: an old and a new worker process side by side on one queue.

The old one is held at contract version 1 (TASKLINE_CONTRACT_VERSION=1, what a worker of the
previous release accepts), the new one accepts version 2 (the default). Version-1 jobs are
applied by either; version-2 jobs (they ask for outcomes) are applied by the new one or
dead-lettered by the old one with a reason that says so: never dropped, never applied twice.
Once the old worker is gone, replaying those dead letters applies them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from taskline_producer import CreateTask, TaskProducer

from tests.conftest import taskline, wait_for

pytestmark = pytest.mark.acceptance

EACH = 300
TOO_NEW = "contract version 2 is newer than this worker accepts (1..1): upgrade the workers, then replay"


def commands(n: int, label: str, users: list[int]) -> list[CreateTask]:
    base = datetime.now(UTC) - timedelta(minutes=5)
    return [
        CreateTask(
            command_id=uuid4(),
            issued_at=base + timedelta(microseconds=i),
            task_id=uuid4(),
            user_id=users[i % len(users)],
            title=f"{label} {i}",
        )
        for i in range(n)
    ]


async def applied_ids(db: Any, command_ids: list[UUID]) -> set[UUID]:
    rows = await db.fetch("SELECT command_id FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids)
    return {row["command_id"] for row in rows}


async def dead_letters(db: Any, command_ids: list[UUID]) -> dict[UUID, str]:
    rows = await db.fetch(
        "SELECT job_id, reason FROM dead_letter WHERE job_id = ANY($1::text[])", [str(c) for c in command_ids]
    )
    return {UUID(row["job_id"]): row["reason"] for row in rows}


async def test_old_and_new_workers_side_by_side_never_drop_or_double_apply(settings, redis, db, users, start_worker):
    old = start_worker(TASKLINE_CONTRACT_VERSION="1")
    new = start_worker()
    for worker in (old, new):
        await wait_for(lambda w=worker: w.proc.poll() is not None or "worker started" in w.log(), timeout=30)
        assert worker.proc.poll() is None, worker.log()

    producer = TaskProducer(redis, queue=settings.queue)
    v1 = commands(EACH, "version 1", users)
    v2 = commands(EACH, "version 2", users)
    # Interleaved, so both workers meet both kinds.
    for one, two in zip(v1, v2, strict=True):
        assert (await producer.send(one)).queued
        assert (await producer.send(two, outcome_ttl=600)).queued
    v1_ids = [c.command_id for c in v1]
    v2_ids = [c.command_id for c in v2]

    async def all_accounted_for() -> bool:
        done = len(await applied_ids(db, v1_ids + v2_ids)) + len(await dead_letters(db, v1_ids + v2_ids))
        return done >= 2 * EACH

    await wait_for(all_accounted_for, timeout=120, interval=0.2)

    # Version 1: applied, by whichever worker took it.
    assert await applied_ids(db, v1_ids) == set(v1_ids)
    assert await dead_letters(db, v1_ids) == {}
    # Version 2: applied by the new worker or dead-lettered by the old one, never both, never neither.
    applied, refused = await applied_ids(db, v2_ids), await dead_letters(db, v2_ids)
    assert applied.isdisjoint(refused)
    assert applied | set(refused) == set(v2_ids)
    assert applied, "the new worker applied none of the version-2 jobs"
    assert refused, "the old worker dead-lettered none of the version-2 jobs: it did not run side by side"
    assert all(reason.startswith(TOO_NEW) for reason in refused.values()), set(refused.values())
    # Each task exists once: nothing was applied twice.
    task_ids = [c.task_id for c in v1] + [c.task_id for c in v2 if c.command_id in applied]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == len(task_ids)
    # The producer of the version-2 jobs sees which was which.
    for command_id in v2_ids:
        outcome = await producer.status(command_id)
        assert outcome.state == ("applied" if command_id in applied else "dead_letter"), outcome
        if command_id in refused:
            assert outcome.reason == refused[command_id]

    # The upgrade finishes: the old worker stops, the dead letters are replayed and applied.
    assert old.stop() == 0
    replayed = await taskline(settings, "dead-letters", "replay", "--json", *(str(c) for c in refused))
    assert replayed.returncode == 0, replayed.stderr
    assert sorted(json.loads(replayed.stdout)["replayed"]) == sorted(str(c) for c in refused)

    async def all_applied() -> bool:
        return len(await applied_ids(db, v2_ids)) == EACH

    await wait_for(all_applied, timeout=60, interval=0.2)
    assert await dead_letters(db, v2_ids) == {}
    outcomes = [await producer.outcome(command_id, timeout=10) for command_id in refused]
    assert {outcome.state for outcome in outcomes} == {"applied"}
    assert (
        await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in v1 + v2])
        == 2 * EACH
    )


async def test_a_worker_held_at_contract_3_without_tracing_applies_traced_commands(
    settings, redis, db, users, start_worker
):
    """A service that turned OpenTelemetry on before the workers were upgraded: its traced commands
    (one, and a bulk job) are applied by a worker that neither traces nor knows contract 4, because
    the trace context travels beside the job (its trace key), not inside it; the trace keys are
    deleted with the jobs."""
    from opentelemetry import trace
    from taskline_producer import keys

    from tests.support.tracing import capturing

    producer = TaskProducer(redis, queue=settings.queue, signing_key=None)
    one, *bulk = commands(3, "traced", users)
    with capturing(), trace.get_tracer("test").start_as_current_span("caller"):
        await producer.send(one)
        bulk_receipt = await producer.send_bulk(bulk)
    trace_keys = [keys.trace_key(str(one.command_id)), keys.trace_key(bulk_receipt.job_id)]
    for key in trace_keys:  # the jobs are traced: their trace keys are written
        assert json.loads(await redis.get(key))["traceparent"].startswith("00-")
    worker = start_worker(TASKLINE_CONTRACT_VERSION="3")
    task_ids = [command.task_id for command in (one, *bulk)]

    async def applied() -> bool:
        return await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == 3

    await wait_for(applied, timeout=60)

    async def keys_gone() -> bool:
        return await redis.exists(*trace_keys, keys.job_key(str(one.command_id))) == 0

    await wait_for(keys_gone, timeout=30)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = $1", str(one.command_id)) == 0
    assert worker.stop() == 0
