"""The relay's two Redis round trips: publish a batch of jobs, and read the states of a batch of
published commands.

Publishing runs `PACKED_ENQUEUE_SCRIPT`: the producers' enqueue script
(`taskline_producer.wire.ENQUEUE_SCRIPT`: the same duplicate check, the same two writes, the same
wake-up token) reading its jobs from one argument that packs them (`pack_jobs`) instead of two
arguments per job, because encoding a thousand arguments per batch was the larger part of the
relay's own Redis cost. One EVAL per 500 jobs, all of a batch in one pipeline, so one round trip
per batch. A job whose id is already queued (or running) is refused by the script as a duplicate,
which is what a re-publication of a command Redis still holds should do
(tests/integration/test_relay_enqueue.py holds the two scripts to the same replies and writes).

A published command's state is what `taskline_producer.outcomes.read_outcome` reads (its outcome
key, then whether its job is queued or claimed): the outcomes of a batch in one MGET, then, for
the commands without a final outcome only, their job and claim keys in one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.outcomes import FINAL_STATES, Outcome

__all__ = ["PACKED_ENQUEUE_SCRIPT", "SCRIPT_CHUNK", "pack_jobs", "publish_jobs", "read_states"]

SCRIPT_CHUNK: Final = 500
"""Jobs per EVAL: bounds how long one script blocks Redis (about a millisecond)."""

PACKED_ENQUEUE_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3]: the jobs packed as <length>:<job id><length>:<job JSON>, one pair after another.
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
local packed, at = ARGV[3], 1
local function take()
  local colon = string.find(packed, ':', at, true)
  local size = tonumber(string.sub(packed, at, colon - 1))
  local value = string.sub(packed, colon + 1, colon + size)
  at = colon + size + 1
  return value
end
local queued = {{}}
while at <= #packed do
  local id = take()
  local job = take()
  if redis.call('EXISTS', '{keys.JOB_KEY_PREFIX}' .. id, '{keys.RESULT_KEY_PREFIX}' .. id) == 0 then
    redis.call('SET', '{keys.JOB_KEY_PREFIX}' .. id, job, 'PX', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  -- Wake one idle worker now rather than at its next poll (bounded: a few tokens at most).
  redis.call('LPUSH', KEYS[1] .. '{keys.WAKE_KEY_SUFFIX}', 1)
  redis.call('LTRIM', KEYS[1] .. '{keys.WAKE_KEY_SUFFIX}', 0, 15)
end
return queued
"""


def pack_jobs(jobs: Sequence[tuple[str, bytes]]) -> bytes:
    """(job id, job JSON) pairs as `PACKED_ENQUEUE_SCRIPT` reads them: each value after its byte
    length and a colon, so any bytes may appear in a job."""
    parts: list[bytes] = []
    for job_id, job in jobs:
        encoded = job_id.encode()
        parts.append(b"%d:%b%d:%b" % (len(encoded), encoded, len(job), job))
    return b"".join(parts)


async def publish_jobs(
    redis: Redis, queue: str, job_ttl_ms: int, now_ms: int, jobs: Sequence[tuple[str, bytes]]
) -> int:
    """Enqueue (job id, job JSON) pairs in one round trip; how many were new to Redis."""
    if not jobs:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(jobs), SCRIPT_CHUNK):
            args: list[Any] = [now_ms, job_ttl_ms, pack_jobs(jobs[start : start + SCRIPT_CHUNK])]
            pipe.eval(PACKED_ENQUEUE_SCRIPT, 1, queue, *args)
        replies = await pipe.execute()
    return sum(int(flag) for reply in replies for flag in reply)


async def read_states(redis: Redis, command_ids: Sequence[str]) -> list[str]:
    """The state of each command (its job id is its command id): a final outcome (`applied`,
    `duplicate`, `dead_letter`), `running`, `queued` (waiting, or waiting for a retry), or
    `unknown`: Redis holds no job for it, although its last outcome may say `retrying` (a
    FLUSHALL between the worker's retry and its next try takes the job and leaves the outcome)."""
    if not command_ids:
        return []
    # The outcomes first, in one MGET; whether Redis holds the job only for a command without a
    # final outcome (in the same order as before: outcome, then job, then claim).
    outcomes = await redis.mget([keys.outcome_key(command_id) for command_id in command_ids])
    states: list[str] = []
    undecided: list[int] = []
    for index, raw in enumerate(outcomes):
        state = Outcome.from_json(raw).state if raw is not None else None
        states.append(state if state in FINAL_STATES else "unknown")
        if state not in FINAL_STATES:
            undecided.append(index)
    if not undecided:
        return states
    async with redis.pipeline(transaction=False) as pipe:
        for index in undecided:
            pipe.exists(keys.job_key(command_ids[index]))
            pipe.exists(keys.in_progress_key(command_ids[index]))
        replies = await pipe.execute()
    for position, index in enumerate(undecided):
        queued, running = replies[2 * position : 2 * position + 2]
        if running:
            states[index] = "running"
        elif queued:
            states[index] = "queued"
    return states
