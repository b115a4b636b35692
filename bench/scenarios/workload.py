"""What the scenarios send and what they check afterwards: `create_task` commands for the
benchmark's users, queued on a staging key; the keys arq could leave behind per job; percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from taskline_producer.client import TaskProducer
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask
from taskline_producer.keys import (
    IN_PROGRESS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RETRY_KEY_PREFIX,
    TRACE_KEY_PREFIX,
)
from taskline_producer.signing import SigningKey

from bench.services import USERS, Env

BULK_SIZE = 100
SEND_SIZE = 10
"""Commands per traced single-command send (send_many): each send is one producer trace."""
"""Commands per `apply_commands` job (`TaskProducer.send_bulk`)."""


def make_commands(n: int, offset: int = 0) -> list[CreateTask]:
    now = datetime.now(UTC)
    return [
        CreateTask(
            command_id=uuid4(),
            issued_at=now,
            task_id=uuid4(),
            user_id=(offset + i) % USERS + 1,
            title=f"bench task {offset + i}",
            description="created by the taskline benchmark",
        )
        for i in range(n)
    ]


def make_stream(tasks: int) -> list[Command]:
    """create → update → complete for each of `tasks` tasks, in that order, back to back (the
    way most services send them), each a millisecond after the one before."""
    now = datetime.now(UTC)
    commands: list[Command] = []
    for i, create in enumerate(make_commands(tasks)):
        at = now + timedelta(milliseconds=3 * i)
        user, task = create.user_id, create.task_id
        commands.append(create.model_copy(update={"issued_at": at}))
        commands.append(
            UpdateTask(
                command_id=uuid4(),
                issued_at=at + timedelta(milliseconds=1),
                task_id=task,
                user_id=user,
                title=f"bench task {i}, renamed",
            )
        )
        commands.append(
            CompleteTask(command_id=uuid4(), issued_at=at + timedelta(milliseconds=2), task_id=task, user_id=user)
        )
    return commands


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def enqueue_staged(
    env: Env,
    staging: str,
    commands: Sequence[Command],
    bulk: bool,
    outcome_ttl: int | None = None,
    signing_key: SigningKey | None = None,
    sampled: float | None = None,
) -> list[str]:
    """Queue the commands on a staging key (renamed to the real queue when the clock starts),
    signed with `signing_key` when given; with `sampled`, from traced producers (bench/scenarios/
    tracing.py) that sample that share of their traces."""
    if sampled is not None:
        return await enqueue_traced(env, staging, commands, bulk, sampled)
    producer = TaskProducer(env.redis, queue=staging, signing_key=signing_key)
    if bulk:
        ids = []
        for start in range(0, len(commands), BULK_SIZE):
            receipt = await producer.send_bulk(list(commands[start : start + BULK_SIZE]), outcome_ttl=outcome_ttl)
            ids.append(receipt.job_id)
        return ids
    report = await producer.send_many(list(commands), outcome_ttl=outcome_ttl)
    if report.duplicates:
        raise RuntimeError(f"{len(report.duplicates)} duplicates while queueing")
    return [str(c.command_id) for c in commands]


async def enqueue_traced(env: Env, staging: str, commands: list[CreateTask], bulk: bool, sampled: float) -> list[str]:
    """Queue the commands in sends of their own, each under a producer span of a provider of this
    scenario's own (the process's global one is left alone) sampling `sampled` of its traces; the
    client writes each span's trace context, sampled flag included, beside its jobs (trace keys)."""
    from opentelemetry.sdk.trace import TracerProvider  # the otel extra: only for the tracing scenario
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    tracer = TracerProvider(sampler=TraceIdRatioBased(sampled)).get_tracer("bench producer")
    producer = TaskProducer(env.redis, queue=staging, signing_key=None)
    ids: list[str] = []
    size = BULK_SIZE if bulk else SEND_SIZE
    for start in range(0, len(commands), size):
        chunk = commands[start : start + size]
        with tracer.start_as_current_span("producer"):
            if bulk:
                ids.append((await producer.send_bulk(chunk)).job_id)
            else:
                report = await producer.send_many(chunk)
                if report.duplicates:
                    raise RuntimeError(f"{len(report.duplicates)} duplicates while queueing")
                ids.extend(str(c.command_id) for c in chunk)
    return ids


async def leftovers(env: Env, queue: str, job_ids: list[str]) -> dict[str, int]:
    """Keys arq could leave per job (job, in-progress, retry, result), and the rest of the db."""
    counts = {"job": 0, "in_progress": 0, "retry": 0, "result": 0}
    prefixes = {
        "job": JOB_KEY_PREFIX,
        "in_progress": IN_PROGRESS_KEY_PREFIX,
        "retry": RETRY_KEY_PREFIX,
        "result": RESULT_KEY_PREFIX,
    }
    for start in range(0, len(job_ids), 1000):
        chunk = job_ids[start : start + 1000]
        async with env.redis.pipeline(transaction=False) as pipe:
            for name in counts:
                pipe.exists(*[prefixes[name] + job_id for job_id in chunk])
            for name, found in zip(counts, await pipe.execute(), strict=True):
                counts[name] += int(found)
    arq_keys = 0
    async for _ in env.redis.scan_iter(match=JOB_KEY_PREFIX.split(":")[0] + ":*", count=1000):
        arq_keys += 1
    counts["queue_members"] = int(await env.redis.zcard(queue))
    counts["arq_keys_in_db"] = arq_keys
    counts["per_job_total"] = counts["job"] + counts["in_progress"] + counts["retry"] + counts["result"]
    return counts


async def unlink_jobs(env: Env, queue: str, job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 1000):
        chunk = job_ids[start : start + 1000]
        await env.redis.unlink(*[JOB_KEY_PREFIX + j for j in chunk], *[TRACE_KEY_PREFIX + j for j in chunk])
    await env.redis.unlink(queue)
