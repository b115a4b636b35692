"""The fleet as Redis sees it: the heartbeats of live workers, and of workers that stopped beating.

Used by `taskline health`, `taskline metrics`, `taskline status` and `taskline web`. A worker is
live while its heartbeat key is younger than three heartbeat intervals, measured by Redis
(worker/observe/heartbeat.py). An older key that still exists belongs to a worker that stopped
beating (crashed); it is kept until that worker's claims have expired (worker/tools/claims.py).
The fleet's Prometheus page is built from these documents in worker/tools/fleet_metrics.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer.keys import heartbeat_key, workers_index_key

from worker.observe.heartbeat import heartbeat_age_s, is_live
from worker.text import json_object, reply_text
from worker.tools.bounded_reads import Oversized, read_values

__all__ = ["Heartbeats", "live_workers", "read_heartbeats", "summary"]


MAX_WORKERS_READ: Final = 10_000
"""The most heartbeat documents one reading looks at (each read only up to VIEW_MAX_BYTES)."""


@dataclass
class Heartbeats:
    """The queue's heartbeat documents: live workers, and workers that stopped beating whose last
    document is still kept (each with `age_s`, the seconds since its last heartbeat)."""

    live: list[dict[str, Any]] = field(default_factory=list)
    gone: list[dict[str, Any]] = field(default_factory=list)


async def read_heartbeats(redis: Redis, queue: str) -> Heartbeats:
    """Every kept heartbeat document of the queue, split into live and gone, oldest first."""
    index = await redis.zrange(workers_index_key(queue), 0, MAX_WORKERS_READ - 1)
    ids = [reply_text(member) for member in index]
    found = Heartbeats()
    if not ids:
        return found
    documents = await read_values(redis, [heartbeat_key(queue, worker_id) for worker_id in ids])
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.pttl(heartbeat_key(queue, worker_id))
        pttls = await pipe.execute()
    for raw, pttl in zip(documents, pttls, strict=True):
        # None: expired, not a heartbeat, or larger than any heartbeat (Oversized is not read)
        document = None if isinstance(raw, Oversized) else json_object(raw)
        if document is None or "worker_id" not in document:
            continue
        document["age_s"] = round(heartbeat_age_s(document, int(pttl)), 3)
        (found.live if is_live(document) else found.gone).append(document)
    found.live.sort(key=lambda doc: str(doc.get("started_at", "")))
    found.gone.sort(key=lambda doc: str(doc.get("started_at", "")))
    return found


async def live_workers(redis: Redis, queue: str) -> list[dict[str, Any]]:
    """The heartbeat documents of the queue's live workers, oldest first."""
    return (await read_heartbeats(redis, queue)).live


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat without its metrics snapshot, with `ready` (database reachable, not stopping)."""
    data = {key: value for key, value in document.items() if key not in ("metrics", "running_job_ids")}
    data["ready"] = bool(document.get("db_ok")) and not document.get("stopping")
    return data
