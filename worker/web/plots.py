"""The overview's plots: the kept history (TASKLINE_HISTORY_KEEP) as a few line charts, one of
them per function, and the per-function rates table.

The web process keeps the samples it has read in memory and reads only the newer ones on each
refresh (one ZRANGEBYSCORE from the newest it has), so a day of history costs one full read at
start-up and a sample or two per refresh after that. The samples are summed into at most
`POINTS` buckets per plot, so a long history draws as fast as a short one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from worker.tools.history import Counters, by_function, quantile, read_history, summarise
from worker.web.charts import Series, line_chart

__all__ = ["POINTS", "KeptHistory", "charts", "function_rates"]

POINTS: Final = 240
"""Points per series at most."""
FUNCTIONS_PLOTTED: Final = 4
"""The busiest functions get a line each in the per-function plot."""


@dataclass
class KeptHistory:
    """The samples of the last `keep_s` seconds, read incrementally."""

    keep_s: float
    samples: list[dict[str, Any]] = field(default_factory=list)

    async def refresh(self, redis: Redis, queue: str, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        newest = self.samples[-1]["t"] if self.samples else now - self.keep_s
        fresh = await read_history(redis, queue, since_s=now - newest, now=now)
        # read again after the await: another request may have added some of them meanwhile
        newest = self.samples[-1]["t"] if self.samples else newest
        self.samples = [s for s in self.samples + [f for f in fresh if f["t"] > newest] if s["t"] >= now - self.keep_s]
        return self.samples


def span_s(samples: list[dict[str, Any]], now: float, keep_s: float) -> float:
    """The plots' time span: the history there is, in whole 10 minutes, from 10 minutes to the
    history's kept length."""
    oldest = min((s["t"] for s in samples), default=now)
    return float(min(keep_s, max(600, math.ceil((now - oldest) / 600) * 600)))


def _buckets(
    samples: list[dict[str, Any]], now: float, span: float
) -> list[tuple[float, Counters, float, dict[str, Any]]]:
    """(time, summed counters, summed dt, the last sample's gauges) per bucket, oldest first."""
    width = max(span / POINTS, 1e-9)
    grouped: dict[int, tuple[float, Counters, float, dict[str, Any]]] = {}
    for sample in samples:
        if sample["t"] < now - span:
            continue
        index = int((sample["t"] - (now - span)) // width)
        _, total, dt, _ = grouped.get(index, (0.0, Counters(), 0.0, {}))
        grouped[index] = (
            sample["t"],
            total.plus(Counters.from_dict(sample)),
            dt + float(sample.get("dt") or 0),
            sample,
        )
    return [grouped[i] for i in sorted(grouped)]


def _label(span: float) -> str:
    return f"last {span / 3600:g} h" if span >= 7200 else f"last {span / 60:.0f} min"


def charts(samples: list[dict[str, Any]], keep_s: float, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    span = span_s(samples, now, keep_s)
    last = _label(span)
    buckets = _buckets(samples, now, span)

    def per_s(count: float, dt: float) -> float | None:
        return count / dt if dt > 0 else None

    rate = Series("commands/s", [(t, per_s(c.applied + c.duplicates, dt)) for t, c, dt, _ in buckets])
    latency = Series("p95", [(t, quantile(c.latency, 0.95)) for t, c, _, _ in buckets])
    ready = Series("ready", [(t, g.get("ready")) for t, _, _, g in buckets])
    deferred = Series("deferred", [(t, g.get("deferred")) for t, _, _, g in buckets])
    busiest = list(summarise(samples).functions.items())
    busiest.sort(key=lambda item: (-item[1], item[0]))
    per_function = [
        Series(name, [(t, per_s(c.functions.get(name, 0.0), dt)) for t, c, dt, _ in buckets])
        for name, _ in busiest[:FUNCTIONS_PLOTTED]
    ]
    return [
        line_chart(f"Commands per second, {last}", [rate], span_s=span, now=now),
        line_chart(f"Latency p95 (issued → committed), {last}", [latency], unit="s", span_s=span, now=now),
        line_chart(f"Queue depth, {last}", [ready, deferred], span_s=span, now=now),
        line_chart(f"Commands per second by function, {last}", per_function, span_s=span, now=now),
    ]


def function_rates(samples: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """Per function: commands/s over the last minute, the last hour and the whole kept history."""
    now = time.time() if now is None else now
    windows = {
        "minute": summarise(s for s in samples if s["t"] > now - 60),
        "hour": summarise(s for s in samples if s["t"] > now - 3600),
        "kept": summarise(samples),
    }
    names = by_function(windows["kept"].functions, windows["kept"].seconds)
    return [
        {
            "function": name,
            **{
                w: by_function(window.functions, window.seconds).get(name, {}).get("per_s")
                for w, window in windows.items()
            },
            "commands": windows["kept"].functions.get(name, 0.0),
        }
        for name in names
    ]
