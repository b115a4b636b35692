"""The relay's two Redis round trips: publish a batch of jobs, and read the states of a batch of
published commands.

Publishing goes through the producers' enqueue script (`taskline_producer.wire.ENQUEUE_SCRIPT`):
one EVAL per 500 jobs, all of a batch in one pipeline, so one round trip per batch. A job whose id
is already queued (or running) is refused by the script as a duplicate, which is what a
re-publication of a command Redis still holds should do.

A published command's state is what `taskline_producer.outcomes.read_outcome` reads (its outcome
key, then whether its job is queued or claimed), three commands per command in one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.outcomes import FINAL_STATES, Outcome
from taskline_producer.wire import ENQUEUE_SCRIPT

__all__ = ["SCRIPT_CHUNK", "publish_jobs", "read_states"]

SCRIPT_CHUNK: Final = 500
"""Jobs per EVAL: bounds how long one script blocks Redis (about a millisecond)."""


async def publish_jobs(
    redis: Redis, queue: str, job_ttl_ms: int, now_ms: int, jobs: Sequence[tuple[str, bytes]]
) -> int:
    """Enqueue (job id, job JSON) pairs in one round trip; how many were new to Redis."""
    if not jobs:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(jobs), SCRIPT_CHUNK):
            args: list[Any] = [now_ms, job_ttl_ms]
            for job_id, job in jobs[start : start + SCRIPT_CHUNK]:
                args.append(job_id)
                args.append(job)
            pipe.eval(ENQUEUE_SCRIPT, 1, queue, *args)
        replies = await pipe.execute()
    return sum(int(flag) for reply in replies for flag in reply)


async def read_states(redis: Redis, command_ids: Sequence[str]) -> list[str]:
    """The state of each command (its job id is its command id): a final outcome (`applied`,
    `duplicate`, `dead_letter`), `running`, `queued` (waiting, or waiting for a retry), or
    `unknown`: Redis holds no job for it, although its last outcome may say `retrying` (a
    FLUSHALL between the worker's retry and its next try takes the job and leaves the outcome)."""
    if not command_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for command_id in command_ids:
            pipe.get(keys.outcome_key(command_id))
            pipe.exists(keys.job_key(command_id))
            pipe.exists(keys.in_progress_key(command_id))
        replies = await pipe.execute()
    states: list[str] = []
    for i in range(len(command_ids)):
        raw, queued, running = replies[3 * i : 3 * i + 3]
        state = Outcome.from_json(raw).state if raw is not None else None
        if state in FINAL_STATES:
            states.append(state)
        elif running:
            states.append("running")
        elif queued:
            states.append("queued")
        else:
            states.append("unknown")
    return states
