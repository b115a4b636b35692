"""Prometheus metrics, named the way queue exporters name them (the names and help texts:
worker/observe/metric_names.py).

Each worker owns a registry (nothing is created at import time) and serves it on
`TASKLINE_METRICS_PORT` when that is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.observe.metric_names import (
    CLAIMING_PAUSED,
    CLAIMS_WAITING,
    COMMAND_DURATION,
    COMMAND_LATENCY,
    COMMANDS_DEAD_LETTERED,
    COMMANDS_PROCESSED,
    COMMANDS_RETRIED,
    DEAD_LETTERS_WAITING,
    JOBS_IN_PROGRESS,
    OUTBOX_CONFIRMED,
    OUTBOX_INVALID,
    OUTBOX_OLDEST,
    OUTBOX_PUBLISHED,
    OUTBOX_REPUBLISHED,
    OUTBOX_ROWS,
    PURGE_DURATION,
    PURGE_ROWS,
    QUEUE_DEPTH,
)

__all__ = ["Metrics"]

_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    3600.0,
)
_PURGE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._processed_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        r = self.registry
        self.commands = Counter(COMMANDS_PROCESSED.name, COMMANDS_PROCESSED.help, ["function", "outcome"], registry=r)
        self.retries = Counter(COMMANDS_RETRIED.name, COMMANDS_RETRIED.help, ["function", "kind"], registry=r)
        self.dead_letters = Counter(
            COMMANDS_DEAD_LETTERED.name, COMMANDS_DEAD_LETTERED.help, ["function", "kind"], registry=r
        )
        self.duration = Histogram(
            COMMAND_DURATION.name, COMMAND_DURATION.help, ["function"], buckets=_DURATION_BUCKETS, registry=r
        )
        self.latency = Histogram(
            COMMAND_LATENCY.name, COMMAND_LATENCY.help, ["function"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.jobs_in_progress = Gauge(JOBS_IN_PROGRESS.name, JOBS_IN_PROGRESS.help, ["function"], registry=r)
        self.queue_depth = Gauge(QUEUE_DEPTH.name, QUEUE_DEPTH.help, ["queue", "state"], registry=r)
        self.dead_letters_waiting = Gauge(DEAD_LETTERS_WAITING.name, DEAD_LETTERS_WAITING.help, registry=r)
        self.claims_waiting = Gauge(CLAIMS_WAITING.name, CLAIMS_WAITING.help, registry=r)
        self.claiming_paused = Gauge(CLAIMING_PAUSED.name, CLAIMING_PAUSED.help, ["queue"], registry=r)
        # the purge (worker/purge/purger.py)
        self.purge_rows = Counter(PURGE_ROWS.name, PURGE_ROWS.help, ["table"], registry=r)
        self.purge_duration = Histogram(PURGE_DURATION.name, PURGE_DURATION.help, buckets=_PURGE_BUCKETS, registry=r)
        # the outbox relay (worker/relay/)
        self.outbox_rows = Gauge(OUTBOX_ROWS.name, OUTBOX_ROWS.help, ["state"], registry=r)
        self.outbox_oldest = Gauge(OUTBOX_OLDEST.name, OUTBOX_OLDEST.help, ["state"], registry=r)
        self.outbox_published = Counter(OUTBOX_PUBLISHED.name, OUTBOX_PUBLISHED.help, registry=r)
        self.outbox_republished = Counter(OUTBOX_REPUBLISHED.name, OUTBOX_REPUBLISHED.help, registry=r)
        self.outbox_confirmed = Counter(OUTBOX_CONFIRMED.name, OUTBOX_CONFIRMED.help, ["outcome"], registry=r)
        self.outbox_invalid = Counter(OUTBOX_INVALID.name, OUTBOX_INVALID.help, registry=r)

    @contextmanager
    def in_progress(self, function: str) -> Iterator[None]:
        gauge = self.jobs_in_progress.labels(function)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def processed(self, function: str, outcome: str, seconds: float, issued_at: datetime) -> None:
        """One command of a single-command job: counted, its duration and latency observed."""
        commands, duration, latency = self._children(function, outcome)
        commands.inc()
        duration.observe(seconds)
        latency.observe(max(0.0, time.time() - issued_at.timestamp()))

    def processed_in_bulk(self, function: str, outcome: str, issued_ats: Sequence[datetime]) -> None:
        """Commands of an apply_commands job with the same function and outcome: counted, and
        each one's end-to-end latency observed (the job's duration is observed once, by
        bulk_applied)."""
        commands, _, latency = self._children(function, outcome)
        commands.inc(len(issued_ats))
        now = time.time()
        for issued_at in issued_ats:
            latency.observe(max(0.0, now - issued_at.timestamp()))

    def _children(self, function: str, outcome: str) -> tuple[Any, Any, Any]:
        # Labelled children are looked up once per (function, outcome): this runs per command.
        children = self._processed_children.get((function, outcome))
        if children is None:
            children = (
                self.commands.labels(function, outcome),
                self.duration.labels(function),
                self.latency.labels(function),
            )
            self._processed_children[(function, outcome)] = children
        return children

    def bulk_applied(self, seconds: float) -> None:
        self.duration.labels("apply_commands").observe(seconds)

    def retried(self, function: str, kind: str, count: int = 1) -> None:
        self.retries.labels(function, kind).inc(count)

    def dead_lettered(self, function: str, kind: str) -> None:
        self.dead_letters.labels(function, kind).inc()

    def purge_finished(self, seconds: float) -> None:
        self.purge_duration.observe(seconds)

    def purged(self, table: str, rows: int) -> None:
        self.purge_rows.labels(table).inc(rows)

    def outbox_figures(self, unpublished: int, unconfirmed: int, invalid: int, oldest: dict[str, float]) -> None:
        """The outbox table now, as the relay last read it."""
        self.outbox_rows.labels("unpublished").set(unpublished)
        self.outbox_rows.labels("unconfirmed").set(unconfirmed)
        self.outbox_rows.labels("invalid").set(invalid)
        for state, age_s in oldest.items():
            self.outbox_oldest.labels(state).set(age_s)

    def outbox_step(self, *, published: int = 0, republished: int = 0, invalid: int = 0) -> None:
        """One relay step's publications, re-publications and refusals."""
        if published:
            self.outbox_published.inc(published)
        if republished:
            self.outbox_republished.inc(republished)
        if invalid:
            self.outbox_invalid.inc(invalid)

    def outbox_confirmed_as(self, outcome: str, count: int) -> None:
        if count:
            self.outbox_confirmed.labels(outcome).inc(count)
