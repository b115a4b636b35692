"""The jobs themselves: ready, deferred (retries) and running, one page at a time, filtered by
function, user or task.

Read for the page's Queue view, bounded whatever the queue holds: one ZRANGEBYSCORE with a LIMIT
per chunk of `CHUNK` job ids from the page's offset, each listed job's envelope (measured first,
never read past VIEW_MAX_BYTES: worker/tools/bounded_reads.py), then one pipeline for its try
counter and transient-failure counter, and, with a filter, more chunks until the page is full or
`SCAN_MAX` jobs were looked at (the page then offers the next stretch). The running jobs come from
the live workers' heartbeats (their `running_job_ids`). Never a scan of the keyspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from worker.text import reply_text
from worker.tools.bounded_reads import Oversized, parse_json_bounded, read_job_values
from worker.tools.fleet import read_heartbeats

__all__ = ["CHUNK", "SCAN_MAX", "SHOWN", "JobPage", "QueueFilter", "queue_jobs", "queue_page"]

SHOWN: Final = 50
"""Jobs listed per state (on the overview of the queue) or per page (one state)."""
CHUNK: Final = 200
"""Job ids read per ZRANGEBYSCORE while filtering."""
SCAN_MAX: Final = 2000
"""At most this many jobs are looked at for one filtered page."""
STATES: Final = ("ready", "deferred", "running")


def _describe(envelope: Any) -> dict[str, Any]:
    if isinstance(envelope, Oversized):
        return {"function": "(too large to read)", "task_id": None, "size": int(envelope)}
    if not envelope:
        return {"function": None, "task_id": None, "size": 0, "task_ids": [], "user_ids": []}
    try:
        job = parse_json_bounded(envelope)
        argument = job["a"][0]
        commands = argument if isinstance(argument, list) else [argument]
        task_ids = [str(c.get("task_id")) for c in commands if isinstance(c, dict) and c.get("task_id")]
        user_ids = [str(c.get("user_id")) for c in commands if isinstance(c, dict) and c.get("user_id") is not None]
        return {
            "function": job.get("f"),
            "task_id": task_ids[0] if len(commands) == 1 and task_ids else None,
            "commands": len(argument) if isinstance(argument, list) else None,
            "size": len(envelope),
            "task_ids": task_ids,
            "user_ids": user_ids,
        }
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {"function": "(unreadable)", "task_id": None, "size": len(envelope), "task_ids": [], "user_ids": []}


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


@dataclass(frozen=True, slots=True)
class QueueFilter:
    state: str = "ready"
    function: str | None = None
    user_id: str | None = None
    task_id: str | None = None

    @property
    def narrows(self) -> bool:
        return bool(self.function or self.user_id or self.task_id)

    def matches(self, job: dict[str, Any]) -> bool:
        if self.function and job.get("function") != self.function:
            return False
        if self.user_id and self.user_id not in job.get("user_ids", []):
            return False
        return not (self.task_id and self.task_id not in job.get("task_ids", []))


@dataclass
class JobPage:
    jobs: list[dict[str, Any]]
    offset: int
    next_offset: int | None
    """Where the next page starts (a position in the state's list), None at the end."""
    looked_at: int
    """Jobs read to fill this page (more than shown when a filter skipped some)."""
    counts: dict[str, int] = field(default_factory=dict)


async def _ids(redis: Redis, queue: str, state: str, now: int, start: int, num: int) -> list[tuple[str, str | float]]:
    if state == "running":
        heartbeats = await read_heartbeats(redis, queue)
        running = [(str(j), str(d["worker_id"])) for d in heartbeats.live for j in d.get("running_job_ids") or []]
        return list(running[start : start + num])
    low, high = ("-inf", now) if state == "ready" else (f"({now}", "+inf")
    members = await redis.zrangebyscore(queue, low, high, start=start, num=num, withscores=True)
    return [(reply_text(member), float(score)) for member, score in members]


async def queue_page(redis: Redis, queue: str, where: QueueFilter, *, offset: int = 0, limit: int = SHOWN) -> JobPage:
    """One page of one state's jobs matching `where`, from position `offset`; bounded reads."""
    if where.state not in STATES:
        raise ValueError(f"unknown state {where.state!r}: one of {', '.join(STATES)}")
    now = epoch_ms()
    found: list[dict[str, Any]] = []
    position, looked_at = offset, 0
    exhausted = False
    while len(found) < limit and looked_at < SCAN_MAX:
        chunk = await _ids(redis, queue, where.state, now, position, CHUNK if where.narrows else limit - len(found))
        if not chunk:
            exhausted = True
            break
        details = {row["job_id"]: row for row in await _details(redis, [job_id for job_id, _ in chunk])}
        for job_id, extra in chunk:
            position += 1
            looked_at += 1
            job = dict(details[job_id])
            if where.state == "running":
                job["worker_id"] = extra
            else:
                score = float(extra)
                job["runs_at"] = datetime.fromtimestamp(score / 1000, UTC).isoformat()
                job["runs_in_s"] = round((score - now) / 1000, 1)
            if where.matches(job):
                found.append(job)
                if len(found) >= limit:
                    break
    if not exhausted:  # one more id past the page says whether there is a next page
        exhausted = not await _ids(redis, queue, where.state, now, position, 1)
    return JobPage(jobs=found, offset=offset, next_offset=None if exhausted else position, looked_at=looked_at)
