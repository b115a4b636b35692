"""The fleet as Redis sees it: live workers' heartbeats, and one Prometheus page for all of them.

Used by `taskline health`, `taskline metrics`, `taskline status` and `taskline web`. A worker is
live while its heartbeat key is younger than three heartbeat intervals: its age is the time to
live it was written with (`key_ttl_ms` in the document) minus its PTTL, both measured by Redis, so
the clocks of the machines do not matter. An older key that still exists belongs to a worker that
stopped beating (crashed); it is kept until that worker's claims have expired (worker/observe/health.py).

The aggregate page keeps one series per worker (label `worker="<worker id>"`) instead of
summing them: a sum would go down whenever a worker stops, which Prometheus' `rate()` reads as
a counter reset; per-worker series let `sum(rate(...))` do the right thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from worker.observe.health import BEATS_PER_TTL, heartbeat_key, workers_index_key
from worker.observe.metric_names import (
    CLAIMS_WAITING,
    DEAD_LETTERS_WAITING,
    FLEET_GAUGES,
    QUEUE_DEPTH,
    WORKERS_LIVE,
    MetricName,
)
from worker.text import reply_text

__all__ = ["Heartbeats", "heartbeat_age_s", "live_workers", "read_heartbeats", "render_fleet_metrics", "summary"]


@dataclass
class Heartbeats:
    """The queue's heartbeat documents: live workers, and workers that stopped beating whose last
    document is still kept (each with `age_s`, the seconds since its last heartbeat)."""

    live: list[dict[str, Any]] = field(default_factory=list)
    gone: list[dict[str, Any]] = field(default_factory=list)


def heartbeat_age_s(document: dict[str, Any], pttl_ms: int) -> float:
    """Seconds since the document was written: the TTL it was written with minus what is left.
    A document without `key_ttl_ms` was written with three intervals."""
    interval = float(document.get("interval_s") or 0)
    written_ttl = document.get("key_ttl_ms")
    if not isinstance(written_ttl, int | float):
        written_ttl = interval * BEATS_PER_TTL * 1000
    return max(0.0, (float(written_ttl) - max(0, pttl_ms)) / 1000)


def is_live(document: dict[str, Any]) -> bool:
    return float(document.get("age_s", 0.0)) <= float(document.get("interval_s") or 0) * BEATS_PER_TTL


async def read_heartbeats(redis: Redis, queue: str) -> Heartbeats:
    """Every kept heartbeat document of the queue, split into live and gone, oldest first."""
    ids = [reply_text(member) for member in await redis.zrange(workers_index_key(queue), 0, -1)]
    found = Heartbeats()
    if not ids:
        return found
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.get(heartbeat_key(queue, worker_id))
            pipe.pttl(heartbeat_key(queue, worker_id))
        replies = await pipe.execute()
    for raw, pttl in zip(replies[0::2], replies[1::2], strict=True):
        if raw is None:
            continue  # expired
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(document, dict) or "worker_id" not in document:
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


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(metric: MetricName) -> Metric:
    return Metric(metric.name, metric.help, "gauge")


def render_fleet_metrics(
    queue: str,
    workers: Iterable[dict[str, Any]],
    depth: tuple[int, int] | None,
    dead_letters: int | None,
    schedulers: Iterable[dict[str, Any]] = (),
    claims_waiting: int | None = None,
) -> bytes:
    """Prometheus text: every live worker's and scheduler's snapshot (labelled `worker` with the
    process's id; a scheduler's holds the purge metrics), the queue depth, the dead letters
    waiting, and how many workers are live (schedulers not counted)."""
    workers = list(workers)
    families: dict[str, Metric] = {}
    for document in [*workers, *schedulers]:
        worker_id = str(document["worker_id"])
        for family in document.get("metrics") or []:
            name, kind = family.get("name"), family.get("type")
            if not isinstance(name, str) or name in FLEET_GAUGES or kind not in ("counter", "gauge", "histogram"):
                continue
            target = families.setdefault(name, Metric(name, str(family.get("help", name)), kind))
            for sample_name, labels, value in family.get("samples", []):
                target.add_sample(sample_name, {**labels, "worker": worker_id}, float(value))
    live = _gauge(WORKERS_LIVE)
    live.add_sample(WORKERS_LIVE.name, {"queue": queue}, float(len(workers)))
    extra = [live]
    if depth is not None:
        gauge = _gauge(QUEUE_DEPTH)
        gauge.add_sample(QUEUE_DEPTH.name, {"queue": queue, "state": "ready"}, float(depth[0]))
        gauge.add_sample(QUEUE_DEPTH.name, {"queue": queue, "state": "deferred"}, float(depth[1]))
        extra.append(gauge)
    if dead_letters is not None:
        gauge = _gauge(DEAD_LETTERS_WAITING)
        gauge.add_sample(DEAD_LETTERS_WAITING.name, {}, float(dead_letters))
        extra.append(gauge)
    if claims_waiting is not None:
        gauge = _gauge(CLAIMS_WAITING)
        gauge.add_sample(CLAIMS_WAITING.name, {"queue": queue}, float(claims_waiting))
        extra.append(gauge)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), *extra]))
    return generate_latest(registry)
