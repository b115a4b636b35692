"""What an operator does to the queue itself: delete a queued job (it becomes a dead letter),
run a deferred job now, and pause or resume claiming for the whole queue.

Delete, so that a job is either run or removed, never both and never lost, in three steps:

1. `HOLD_SCRIPT` (atomic in Redis, like the workers' claim script): if the job is in the queue
   and nobody has claimed it, claim it for the operator (arq's in-progress key, holding
   `operator:<who>`, expiring after `HOLD_MS`); no worker claims it from then on. Refused when a
   worker holds it: it is running, and the operator is told so.
2. Write its dead letter ("removed by an operator …", category `removed`, the payload kept) and
   the audit record, in one PostgreSQL transaction, committed.
3. `REMOVE_SCRIPT`: if the hold is still the operator's, take the job out of the queue and delete
   its keys.

A crash (or an error) between 1 and 2 leaves a hold that expires: the job runs later, and no dead
letter was written. A crash between 2 and 3 leaves both the job (it runs when the hold expires)
and its dead letter; replaying that dead letter is then harmless (the command is a duplicate).
Nothing is lost either way; the worst is a dead letter of a job that also ran.

Run now: `RUN_NOW_SCRIPT` moves a deferred (or retrying) job's score to now, only if it is still
in the queue and unclaimed, and wakes an idle worker. Pause: `keys.paused_key(queue)` holds who
paused and when; workers honour it in their claim path and `status`/health show it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from worker.pipeline.dead_letters import upsert_dead_letter
from worker.store.engine import Sessions
from worker.store.operator_actions import record_actions
from worker.text import json_object, reply_text

__all__ = [
    "HOLD_MS",
    "REMOVED_CATEGORY",
    "ActionResult",
    "delete_queued_job",
    "pause_claiming",
    "paused_by",
    "resume_claiming",
    "run_now",
]

HOLD_MS: Final = 30_000
"""How long the operator's hold on a job being deleted lasts if the deletion stops half-way."""
REMOVED_CATEGORY: Final = "removed"
"""The dead letter category of a job an operator deleted from the queue."""
_OPERATOR_PREFIX: Final = "operator:"

HOLD_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: job id; ARGV[2]: the hold's value; ARGV[3]: its expiry (ms).
-- Returns {{'held', payload}}, {{'running'}} or {{'absent'}}.
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[1], id) then return {{'absent'}} end
if not redis.call('SET', '{keys.IN_PROGRESS_KEY_PREFIX}' .. id, ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {{'running'}}
end
return {{'held', redis.call('GET', '{keys.JOB_KEY_PREFIX}' .. id) or false}}
"""

REMOVE_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: job id; ARGV[2]: the hold's value. Returns 1 if removed.
local id = ARGV[1]
if redis.call('GET', '{keys.IN_PROGRESS_KEY_PREFIX}' .. id) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], id)
redis.call('DEL', '{keys.JOB_KEY_PREFIX}' .. id, '{keys.RETRY_KEY_PREFIX}' .. id,
  '{keys.TRANSIENT_KEY_PREFIX}' .. id, '{keys.IN_PROGRESS_KEY_PREFIX}' .. id, '{keys.TRACE_KEY_PREFIX}' .. id)
return 1
"""

RELEASE_SCRIPT: Final = f"""
-- ARGV[1]: job id; ARGV[2]: the hold's value. Drops the hold if it is still ours.
if redis.call('GET', '{keys.IN_PROGRESS_KEY_PREFIX}' .. ARGV[1]) == ARGV[2] then
  return redis.call('DEL', '{keys.IN_PROGRESS_KEY_PREFIX}' .. ARGV[1])
end
return 0
"""

RUN_NOW_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: job id; ARGV[2]: now (epoch ms).
-- Returns 'moved', 'due' (already due), 'running' or 'absent'.
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], id)
if not score then return 'absent' end
if redis.call('EXISTS', '{keys.IN_PROGRESS_KEY_PREFIX}' .. id) == 1 then return 'running' end
if tonumber(score) <= tonumber(ARGV[2]) then return 'due' end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
redis.call('LPUSH', KEYS[1] .. '{keys.WAKE_KEY_SUFFIX}', 1)
redis.call('LTRIM', KEYS[1] .. '{keys.WAKE_KEY_SUFFIX}', 0, 15)
return 'moved'
"""


@dataclass(frozen=True, slots=True)
class ActionResult:
    done: bool
    message: str
    """What happened, in words an operator reads (and the audit record keeps)."""


def _function_of(payload: bytes | None) -> str | None:
    document = json_object(payload) if payload else None
    function = document.get("f") if document else None
    return function if isinstance(function, str) else None


async def delete_queued_job(
    redis: Redis, sessions: Sessions, queue: str, job_id: str, *, who: str, max_payload_bytes: int
) -> ActionResult:
    """Remove a queued (ready or deferred) job; it becomes a dead letter saying who removed it."""
    hold = _OPERATOR_PREFIX + who
    reply = await cast(Awaitable[list[Any]], redis.eval(HOLD_SCRIPT, 1, queue, job_id, hold, str(HOLD_MS)))
    state = reply_text(reply[0])
    if state != "held":
        why = "it is running on a worker now" if state == "running" else "it is not in the queue (ran or removed)"
        result = ActionResult(False, f"not deleted {job_id}: {why}")
        async with sessions() as session, session.begin():
            await record_actions(session, who=who, action="delete", queue=queue, targets=[(job_id, result.message)])
        return result
    payload = reply[1] or None
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        async with sessions() as session, session.begin():  # 2. dead letter and record, committed
            await upsert_dead_letter(
                session,
                job_id=job_id,
                function=_function_of(payload),
                payload=payload,
                reason=f"removed by an operator ({who}) from the queue at {stamp}; replay it to queue it again",
                category=REMOVED_CATEGORY,
                attempts=1,
                queue=queue,
                max_payload_bytes=max_payload_bytes,
            )
            message = f"deleted {job_id}: it is a dead letter now (replay puts it back)"
            await record_actions(session, who=who, action="delete", queue=queue, targets=[(job_id, message)])
    except BaseException:
        await cast(Awaitable[int], redis.eval(RELEASE_SCRIPT, 0, job_id, hold))
        raise
    removed = await cast(Awaitable[int], redis.eval(REMOVE_SCRIPT, 1, queue, job_id, hold))  # 3.
    if not removed:  # the hold expired between the steps: the job may run; its dead letter stays
        message = f"deleted {job_id} late: its hold expired first, so it may also run"
    return ActionResult(True, message)


async def run_now(redis: Redis, sessions: Sessions, queue: str, job_id: str, *, who: str) -> ActionResult:
    """Make a deferred (or retrying) job due now."""
    state = reply_text(await cast(Awaitable[Any], redis.eval(RUN_NOW_SCRIPT, 1, queue, job_id, str(epoch_ms()))))
    result = {
        "moved": ActionResult(True, f"{job_id} runs now"),
        "due": ActionResult(False, f"{job_id} is already due: the next free worker runs it"),
        "running": ActionResult(False, f"{job_id} is running on a worker now"),
    }.get(state, ActionResult(False, f"{job_id} is not in the queue (ran or removed)"))
    async with sessions() as session, session.begin():
        await record_actions(session, who=who, action="run-now", queue=queue, targets=[(job_id, result.message)])
    return result


async def paused_by(redis: Redis, queue: str) -> dict[str, Any] | None:
    """Who paused claiming and when (`{"by", "at"}`), or None when workers claim as usual."""
    raw = await redis.get(keys.paused_key(queue))
    if raw is None:
        return None
    return json_object(raw) or {"by": "?", "at": None}


async def pause_claiming(redis: Redis, queue: str, by: str, sessions: Sessions | None = None) -> ActionResult:
    """Workers stop claiming jobs from `queue` (they stay up; running jobs finish)."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    created = await redis.set(keys.paused_key(queue), json.dumps({"by": by, "at": at}), nx=True)
    result = ActionResult(bool(created), "claiming paused" if created else "claiming was paused already")
    if sessions is not None:
        async with sessions() as session, session.begin():
            await record_actions(session, who=by, action="pause", queue=queue, targets=[(None, result.message)])
    return result


async def resume_claiming(redis: Redis, queue: str, by: str, sessions: Sessions | None = None) -> ActionResult:
    """Workers claim jobs from `queue` again."""
    removed = await redis.delete(keys.paused_key(queue))
    result = ActionResult(bool(removed), "claiming resumed" if removed else "claiming was not paused")
    if sessions is not None:
        async with sessions() as session, session.begin():
            await record_actions(session, who=by, action="resume", queue=queue, targets=[(None, result.message)])
    return result
