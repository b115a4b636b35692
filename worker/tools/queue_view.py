"""The jobs themselves: the first ones ready, the next deferred (retries), and the running ones.

Read for the page's Queue view: two ZRANGEBYSCOREs with a LIMIT, then each listed job's envelope
(measured first, never read past VIEW_MAX_BYTES: worker/tools/bounded_reads.py), try counter and
transient-failure counter; the running jobs come from the
live workers' heartbeats (their `running_job_ids`). Never a scan of the keyspace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from worker.text import reply_text
from worker.tools.bounded_reads import Oversized, parse_json_bounded, read_job_values
from worker.tools.fleet import read_heartbeats

__all__ = ["SHOWN", "queue_jobs"]

SHOWN: Final = 50
"""Jobs listed per state."""


def _describe(envelope: Any) -> dict[str, Any]:
    if isinstance(envelope, Oversized):
        return {"function": "(too large to read)", "task_id": None, "size": int(envelope)}
    if not envelope:
        return {"function": None, "task_id": None, "size": 0}
    try:
        job = parse_json_bounded(envelope)
        argument = job["a"][0]
        task_id = argument.get("task_id") if isinstance(argument, dict) else None
        count = len(argument) if isinstance(argument, list) else None
        return {"function": job.get("f"), "task_id": task_id, "commands": count, "size": len(envelope)}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {"function": "(unreadable)", "task_id": None, "size": len(envelope)}


async def _details(redis: Redis, job_ids: list[str]) -> list[dict[str, Any]]:
    if not job_ids:
        return []
    envelopes = await read_job_values(redis, job_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.get(keys.retry_key(job_id))
            pipe.get(keys.transient_key(job_id))
        replies = await pipe.execute()
    rows = []
    for index, job_id in enumerate(job_ids):
        envelope = envelopes[index]
        tries, transient = replies[2 * index : 2 * index + 2]
        rows.append(
            {
                "job_id": job_id,
                **_describe(envelope),
                "tries": int(tries) if tries is not None else 0,
                "transient_failures": int(transient) if transient is not None else 0,
            }
        )
    return rows


async def queue_jobs(redis: Redis, queue: str, *, limit: int = SHOWN) -> dict[str, list[dict[str, Any]]]:
    now = epoch_ms()
    ready = await redis.zrangebyscore(queue, "-inf", now, start=0, num=limit, withscores=True)
    deferred = await redis.zrangebyscore(queue, f"({now}", "+inf", start=0, num=limit, withscores=True)
    ready_ids = [(reply_text(member), score) for member, score in ready]
    deferred_ids = [(reply_text(member), score) for member, score in deferred]
    heartbeats = await read_heartbeats(redis, queue)
    running_ids = [
        (str(job_id), str(doc["worker_id"])) for doc in heartbeats.live for job_id in doc.get("running_job_ids") or []
    ][:limit]
    listed = [j for j, _ in ready_ids] + [j for j, _ in deferred_ids] + [j for j, _ in running_ids]
    details = {row["job_id"]: row for row in await _details(redis, listed)}

    def at(score: float) -> str:
        return datetime.fromtimestamp(score / 1000, UTC).isoformat()

    return {
        "ready": [{**details[job_id], "runs_at": at(s)} for job_id, s in ready_ids],
        "deferred": [
            {**details[job_id], "runs_at": at(s), "runs_in_s": round((s - now) / 1000, 1)} for job_id, s in deferred_ids
        ],
        "running": [{**details[job_id], "worker_id": worker_id} for job_id, worker_id in running_ids],
    }
