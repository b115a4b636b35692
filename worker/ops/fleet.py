"""The fleet as Redis sees it: live workers' heartbeats, and one Prometheus page for all of them.

Used by `taskline health` and `taskline metrics`. A worker is live while its heartbeat key
exists (its time to live is three heartbeat intervals, measured by Redis, so the clocks of the
machines do not matter).

The aggregate page keeps one series per worker (label `worker="<worker id>"`) instead of
summing them: a sum would go down whenever a worker stops, which Prometheus' `rate()` reads as
a counter reset; per-worker series let `sum(rate(...))` do the right thing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from worker.ops.health import FLEET_METRICS, heartbeat_key, workers_index_key

__all__ = ["live_workers", "render_fleet_metrics", "summary"]


async def live_workers(redis: Redis, queue: str) -> list[dict[str, Any]]:
    """The heartbeat documents of the queue's live workers, oldest first."""
    ids = [
        member.decode() if isinstance(member, bytes) else str(member)
        for member in await redis.zrange(workers_index_key(queue), 0, -1)
    ]
    if not ids:
        return []
    values = await redis.mget([heartbeat_key(queue, worker_id) for worker_id in ids])
    workers = []
    for raw in values:
        if raw is None:
            continue  # expired: the worker stopped beating
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if isinstance(document, dict) and "worker_id" in document:
            workers.append(document)
    return sorted(workers, key=lambda doc: str(doc.get("started_at", "")))


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat without its metrics snapshot, with `ready` (database reachable, not stopping)."""
    data = {key: value for key, value in document.items() if key != "metrics"}
    data["ready"] = bool(document.get("db_ok")) and not document.get("stopping")
    return data


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render_fleet_metrics(
    queue: str,
    workers: Iterable[dict[str, Any]],
    depth: tuple[int, int] | None,
    dead_letters: int | None,
    schedulers: Iterable[dict[str, Any]] = (),
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
            if not isinstance(name, str) or name in FLEET_METRICS or kind not in ("counter", "gauge", "histogram"):
                continue
            target = families.setdefault(name, Metric(name, str(family.get("help", name)), kind))
            for sample_name, labels, value in family.get("samples", []):
                target.add_sample(sample_name, {**labels, "worker": worker_id}, float(value))
    live = Metric("taskline_workers_live", "Workers whose heartbeat is fresh.", "gauge")
    live.add_sample("taskline_workers_live", {"queue": queue}, float(len(workers)))
    extra = [live]
    if depth is not None:
        gauge = Metric("taskline_queue_depth", "Jobs in the queue: ready to run now, or deferred (retries).", "gauge")
        gauge.add_sample("taskline_queue_depth", {"queue": queue, "state": "ready"}, float(depth[0]))
        gauge.add_sample("taskline_queue_depth", {"queue": queue, "state": "deferred"}, float(depth[1]))
        extra.append(gauge)
    if dead_letters is not None:
        gauge = Metric("taskline_dead_letters_waiting", "Rows in the dead_letter table.", "gauge")
        gauge.add_sample("taskline_dead_letters_waiting", {}, float(dead_letters))
        extra.append(gauge)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), *extra]))
    return generate_latest(registry)
