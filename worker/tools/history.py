"""The fleet's recent history in Redis: what the plots and the per-minute/per-hour rates read.

Every `TASKLINE_HISTORY_SAMPLE_S` seconds (10 s by default) one process takes a *sample*: it reads
the live workers' heartbeats (which already carry each worker's counters and latency histogram),
subtracts the counters the previous sample saw (the *baseline*, kept in Redis), and adds the
difference to `taskline:history:<queue>`, a sorted set scored by time, trimmed to `TASKLINE_HISTORY_KEEP` (three
hours by default). Each sample also counts the commands of each function, for the per-function
rates. At one sample per 10 s a sample is about half a kilobyte: a day's history is about 4 MB.
Who samples: the scheduler and the web process (each tries every period; `SET NX` on
`taskline:history:<queue>:slot:<n>` lets one of them write each period). `taskline status`
samples too when it runs, so the history also grows with only workers and a terminal.

What it costs the workers: nothing. No command per job, nothing extra per heartbeat; the sample
is built from the heartbeats they write anyway. The history survives a page reload and a restart
of the web process (it lives in Redis); a worker that stops between two samples loses at most its
last period's counts from the plots, and a worker that restarts (counters back at zero) counts
from zero again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys

from worker.observe.metric_names import COMMAND_LATENCY, COMMANDS_DEAD_LETTERED, COMMANDS_PROCESSED, COMMANDS_RETRIED
from worker.text import json_object

__all__ = [
    "KEEP_S",
    "Counters",
    "Window",
    "by_function",
    "counters_of",
    "read_history",
    "summarise",
    "take_sample",
]

KEEP_S: Final = 3 * 3600
"""Samples older than this are trimmed, unless TASKLINE_HISTORY_KEEP says otherwise."""


@dataclass
class Counters:
    """One worker's cumulative counts, read from its heartbeat's metrics snapshot."""

    applied: float = 0.0
    duplicates: float = 0.0
    dead_lettered: float = 0.0
    retried: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)
    """Cumulative latency histogram bucket counts by upper bound (`le`), summed over functions."""
    functions: dict[str, float] = field(default_factory=dict)
    """Commands processed (applied or duplicates) by function."""

    def minus(self, before: Counters | None) -> Counters:
        """The counts since `before`; all of them when there is no `before` or the worker restarted."""
        if before is None or self.applied + self.duplicates < before.applied + before.duplicates:
            return self
        return Counters(
            applied=max(0.0, self.applied - before.applied),
            duplicates=max(0.0, self.duplicates - before.duplicates),
            dead_lettered=max(0.0, self.dead_lettered - before.dead_lettered),
            retried=max(0.0, self.retried - before.retried),
            latency={le: max(0.0, n - before.latency.get(le, 0.0)) for le, n in self.latency.items()},
            functions={f: max(0.0, n - before.functions.get(f, 0.0)) for f, n in self.functions.items()},
        )

    def plus(self, other: Counters) -> Counters:
        latency = dict(self.latency)
        for le, n in other.latency.items():
            latency[le] = latency.get(le, 0.0) + n
        functions = dict(self.functions)
        for name, n in other.functions.items():
            functions[name] = functions.get(name, 0.0) + n
        return Counters(
            self.applied + other.applied,
            self.duplicates + other.duplicates,
            self.dead_lettered + other.dead_lettered,
            self.retried + other.retried,
            latency,
            functions,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
            "latency": self.latency,
            "functions": self.functions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counters:
        return cls(
            applied=float(data.get("applied", 0)),
            duplicates=float(data.get("duplicates", 0)),
            dead_lettered=float(data.get("dead_lettered", 0)),
            retried=float(data.get("retried", 0)),
            latency={str(le): float(n) for le, n in (data.get("latency") or {}).items()},
            functions={str(f): float(n) for f, n in (data.get("functions") or {}).items()},
        )


def counters_of(document: dict[str, Any]) -> Counters:
    """The counters in a heartbeat document's metrics snapshot."""
    counters = Counters()
    for family in document.get("metrics") or []:
        for name, labels, value in family.get("samples", []):
            if name == COMMANDS_PROCESSED.total:
                function = str(labels.get("function", "?"))
                counters.functions[function] = counters.functions.get(function, 0.0) + float(value)
                if labels.get("outcome") == "duplicate":
                    counters.duplicates += float(value)
                else:
                    counters.applied += float(value)
            elif name == COMMANDS_DEAD_LETTERED.total:
                counters.dead_lettered += float(value)
            elif name == COMMANDS_RETRIED.total:
                counters.retried += float(value)
            elif name == COMMAND_LATENCY.bucket and "le" in labels:
                counters.latency[labels["le"]] = counters.latency.get(labels["le"], 0.0) + float(value)
    return counters


async def take_sample(
    redis: Redis,
    queue: str,
    workers: Sequence[dict[str, Any]],
    *,
    every_s: float,
    gauges: Mapping[str, float] | None = None,
    now: float | None = None,
    keep_s: float = KEEP_S,
) -> dict[str, Any] | None:
    """Add this period's sample unless another process already did; returns it, or None.

    `workers` are the live heartbeats; `gauges` (queue depth and the like) are stored as they are."""
    now = time.time() if now is None else now
    slot = int(now // every_s)
    if not await redis.set(keys.history_slot_key(queue, slot), b"1", nx=True, ex=max(2, int(every_s * 3))):
        return None
    raw = await redis.get(keys.history_baseline_key(queue))
    baseline = json_object(raw) or {}
    before = {worker_id: Counters.from_dict(data) for worker_id, data in (baseline.get("workers") or {}).items()}
    current = {str(doc["worker_id"]): counters_of(doc) for doc in workers}
    total = Counters()
    for worker_id, counters in current.items():
        total = total.plus(counters.minus(before.get(worker_id)))
    sample: dict[str, Any] | None = None
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(
            keys.history_baseline_key(queue),
            json.dumps({"t": now, "workers": {worker_id: c.as_dict() for worker_id, c in current.items()}}),
            ex=max(1, int(keep_s)),
        )
        previous_t = baseline.get("t")
        if isinstance(previous_t, int | float) and 0 < now - previous_t <= keep_s:
            sample = {"t": round(now, 3), "dt": round(now - previous_t, 3), **total.as_dict(), **(gauges or {})}
            pipe.zadd(keys.history_key(queue), {json.dumps(sample): now})
            pipe.zremrangebyscore(keys.history_key(queue), "-inf", f"({now - keep_s}")
        await pipe.execute()
    return sample


async def read_history(redis: Redis, queue: str, *, since_s: float, now: float | None = None) -> list[dict[str, Any]]:
    """The samples of the last `since_s` seconds, oldest first."""
    now = time.time() if now is None else now
    members = await redis.zrangebyscore(keys.history_key(queue), now - since_s, "+inf")
    return [sample for sample in (json_object(member) for member in members) if sample is not None]


@dataclass(frozen=True)
class Window:
    """Totals over a stretch of samples."""

    seconds: float
    applied: float
    duplicates: float
    dead_lettered: float
    retried: float
    latency_quantiles: dict[str, float | None]
    functions: dict[str, float] = field(default_factory=dict)
    """Commands processed by function over the window."""

    @property
    def per_second(self) -> float | None:
        return None if self.seconds <= 0 else (self.applied + self.duplicates) / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "commands_per_s": None if self.per_second is None else round(self.per_second, 3),
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
            "latency_s": self.latency_quantiles,
            "by_function": by_function(self.functions, self.seconds),
        }


QUANTILES: Final = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def summarise(samples: Iterable[dict[str, Any]]) -> Window:
    """Rates and latency percentiles over the samples."""
    total = Counters()
    seconds = 0.0
    for sample in samples:
        total = total.plus(Counters.from_dict(sample))
        seconds += float(sample.get("dt") or 0)
    return Window(
        seconds=seconds,
        applied=total.applied,
        duplicates=total.duplicates,
        dead_lettered=total.dead_lettered,
        retried=total.retried,
        latency_quantiles={name: quantile(total.latency, q) for name, q in QUANTILES},
        functions=total.functions,
    )


def by_function(functions: Mapping[str, float], seconds: float) -> dict[str, dict[str, float | None]]:
    """Per function: commands processed and commands per second over `seconds`, busiest first."""
    ordered = sorted(functions.items(), key=lambda item: (-item[1], item[0]))
    return {
        name: {"commands": count, "per_s": None if seconds <= 0 else round(count / seconds, 3)}
        for name, count in ordered
    }


def quantile(buckets: dict[str, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram (bucket upper bound → count), interpolated linearly
    inside the bucket it falls in; None without observations. Above the last finite bound: that bound."""
    bounds = sorted(((float(le), n) for le, n in buckets.items()), key=lambda item: item[0])
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
