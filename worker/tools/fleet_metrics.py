"""The fleet's Prometheus page for `taskline metrics`: read from Redis and the database,
printed once or served over HTTP.

The page keeps one series per worker (label `worker="<worker id>"`) instead of summing them: a
sum would go down whenever a worker stops, which Prometheus' `rate()` reads as a counter reset;
per-worker series let `sum(rate(...))` do the right thing.

Served, the page is kept for `PAGE_TTL_S` (one second): Prometheus servers (often two, for
redundancy) and dashboards may scrape as often as they like, and Redis and PostgreSQL see at
most one read a second. Scrapes that arrive while a read is running wait for it instead of
starting their own.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings
from worker.observe.metric_names import (
    CLAIMING_PAUSED,
    CLAIMS_WAITING,
    DEAD_LETTERS_WAITING,
    FAIR_KEY_WAITING,
    FAIR_KEYS,
    FLEET_GAUGES,
    OUTBOX_OLDEST,
    OUTBOX_PREFIX,
    OUTBOX_ROWS,
    QUEUE_DEPTH,
    WORKERS_LIVE,
    MetricName,
)
from worker.observe.service_errors import describe
from worker.tools.fair_limits import FairnessView

__all__ = ["PAGE_TTL_S", "CachedPage", "FleetReader", "read_once", "render_fleet_metrics", "serve_fleet"]

PAGE_TTL_S: Final = 1.0
_TIMEOUT_S: Final = 5.0


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
    claiming_paused: bool | None = None,
    relays: Iterable[dict[str, Any]] = (),
    fairness: FairnessView | None = None,
) -> bytes:
    """Prometheus text: every live worker's and scheduler's snapshot (labelled `worker` with the
    process's id; a scheduler's holds the purge metrics), each live outbox relay's counters
    (`taskline_outbox_*`, labelled `worker` with the relay's id), the outbox's figures as the
    freshest relay read them (`taskline_outbox_rows`, `taskline_outbox_oldest_seconds`), the queue
    depth, the dead letters waiting, and how many workers are live (schedulers and relays not
    counted)."""
    workers, relays = list(workers), list(relays)
    families: dict[str, Metric] = {}
    for document in [*workers, *schedulers]:
        own = [f for f in document.get("metrics") or [] if not _is_outbox(f)]  # a relay's, always 0 here
        _add_snapshot(families, str(document["worker_id"]), own)
    for relay in relays:
        _add_snapshot(families, str(relay["relay_id"]), [f for f in relay.get("metrics") or [] if _is_outbox(f)])
    live = _gauge(WORKERS_LIVE)
    live.add_sample(WORKERS_LIVE.name, {"queue": queue}, float(len(workers)))
    extra = [live]
    if depth is not None:
        gauge = _gauge(QUEUE_DEPTH)
        gauge.add_sample(QUEUE_DEPTH.name, {"queue": queue, "state": "ready"}, float(depth[0]))
        gauge.add_sample(QUEUE_DEPTH.name, {"queue": queue, "state": "deferred"}, float(depth[1]))
        if fairness is not None:  # jobs waiting their turn are backlog too (autoscaling sums the states)
            lanes = float(fairness.jobs_waiting)
            gauge.add_sample(QUEUE_DEPTH.name, {"queue": queue, "state": "in_fair_lanes"}, lanes)
        extra.append(gauge)
    if dead_letters is not None:
        gauge = _gauge(DEAD_LETTERS_WAITING)
        gauge.add_sample(DEAD_LETTERS_WAITING.name, {}, float(dead_letters))
        extra.append(gauge)
    if claims_waiting is not None:
        gauge = _gauge(CLAIMS_WAITING)
        gauge.add_sample(CLAIMS_WAITING.name, {"queue": queue}, float(claims_waiting))
        extra.append(gauge)
    if claiming_paused is not None:
        gauge = _gauge(CLAIMING_PAUSED)
        gauge.add_sample(CLAIMING_PAUSED.name, {"queue": queue}, 1.0 if claiming_paused else 0.0)
        extra.append(gauge)
    extra.extend(_outbox_gauges(relays))
    if fairness is not None:
        extra.extend(_fairness_gauges(queue, fairness))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), *extra]))
    return generate_latest(registry)


def _is_outbox(family: dict[str, Any]) -> bool:
    return str(family.get("name", "")).startswith(OUTBOX_PREFIX)


def _add_snapshot(families: dict[str, Metric], process_id: str, snapshot: Iterable[dict[str, Any]]) -> None:
    for family in snapshot:
        name, kind = family.get("name"), family.get("type")
        if not isinstance(name, str) or name in FLEET_GAUGES or kind not in ("counter", "gauge", "histogram"):
            continue
        target = families.setdefault(name, Metric(name, str(family.get("help", name)), kind))
        for sample_name, labels, value in family.get("samples", []):
            target.add_sample(sample_name, {**labels, "worker": process_id}, float(value))


def _outbox_gauges(relays: Sequence[dict[str, Any]]) -> list[Metric]:
    """The outbox table's figures, once (every relay reads the same table): the freshest reading."""
    read = [r for r in relays if isinstance(r.get("outbox"), dict)]
    if not read:
        return []
    figures = min(read, key=lambda r: float(r.get("age_s") or 0.0))["outbox"]
    rows, oldest = _gauge(OUTBOX_ROWS), _gauge(OUTBOX_OLDEST)
    for state in ("unpublished", "unconfirmed", "invalid"):
        rows.add_sample(OUTBOX_ROWS.name, {"state": state}, float(figures.get(state) or 0))
    for state in ("unpublished", "unconfirmed"):
        oldest.add_sample(OUTBOX_OLDEST.name, {"state": state}, float(figures.get(f"oldest_{state}_s") or 0.0))
    return [rows, oldest]


def _fairness_gauges(queue: str, fairness: FairnessView) -> list[Metric]:
    keys_gauge = _gauge(FAIR_KEYS)
    keys_gauge.add_sample(FAIR_KEYS.name, {"queue": queue, "state": "waiting"}, float(fairness.keys_waiting))
    keys_gauge.add_sample(FAIR_KEYS.name, {"queue": queue, "state": "held"}, float(fairness.held_count))
    lanes = _gauge(FAIR_KEY_WAITING)
    for lane, state in [*((h, "held") for h in fairness.held), *((w, "waiting") for w in fairness.largest)]:
        lanes.add_sample(FAIR_KEY_WAITING.name, {"queue": queue, "key": lane.key, "state": state}, float(lane.waiting))
    return [keys_gauge, lanes]


class FleetReader:
    """Reads the fleet's numbers: heartbeats and queue depth from Redis, dead letters from the database."""

    def __init__(self, settings: Settings) -> None:
        from worker.store.engine import make_tool_engine

        self.settings = settings
        self.database_problem: str | None = None
        """Why the last page has no dead-letter count (the database could not be used), if so."""
        self.redis = make_tool_redis(settings.redis_url, _TIMEOUT_S)
        self.engine = make_tool_engine(settings, "taskline-metrics")

    async def page(self) -> bytes:
        from taskline_producer.keys import scheduler_queue

        from worker.observe.health import count_dead_letters, queue_depth
        from worker.tools.claims import stranded_claims
        from worker.tools.fair_limits import read_fairness
        from worker.tools.fleet import live_workers, read_heartbeats
        from worker.tools.pause import read_pause
        from worker.tools.relays import live_relays

        queue = self.settings.queue
        heartbeats = await read_heartbeats(self.redis, queue)
        workers = heartbeats.live
        claims = await stranded_claims(self.redis, queue, heartbeats)
        schedulers = await live_workers(self.redis, scheduler_queue(queue))
        depth = await queue_depth(self.redis, queue)
        dead_letters: int | None
        try:
            async with asyncio.timeout(_TIMEOUT_S), self.engine.connect() as conn:
                dead_letters = await count_dead_letters(conn)
        except Exception as exc:
            self.database_problem = describe(exc)
            dead_letters = None
        else:
            self.database_problem = None
        return render_fleet_metrics(
            queue,
            workers,
            depth,
            dead_letters,
            schedulers=schedulers,
            claims_waiting=len(claims),
            claiming_paused=await read_pause(self.redis, queue) is not None,
            relays=await live_relays(self.redis, queue),
            fairness=await read_fairness(self.redis, queue),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


class CachedPage:
    """`read()` at most once per `ttl_s`; concurrent callers share one read. A failed read is
    not kept: the next call tries again."""

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        ttl_s: float = PAGE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._clock = clock
        self._page: bytes | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> bytes:
        async with self._lock:
            if self._page is None or self._clock() - self._read_at >= self._ttl_s:
                self._page = await self._read()
                self._read_at = self._clock()
            return self._page


async def read_once(settings: Settings) -> tuple[bytes, str | None]:
    """The page, and why the dead letters are not on it (if they are not)."""
    reader = FleetReader(settings)
    try:
        return await reader.page(), reader.database_problem
    finally:
        await reader.close()


async def serve_fleet(settings: Settings, port: int, host: str, token: str | None, *, log: Any) -> None:
    """Serve the page at /metrics on host:port until SIGTERM or SIGINT."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from worker.observe.http_server import Response, json_response
    from worker.observe.http_server import serve as serve_http

    reader = FleetReader(settings)
    cached = CachedPage(reader.page)

    async def handle(path: str) -> Response:
        if path in ("/metrics", "/"):
            try:
                return Response(200, await cached.get(), CONTENT_TYPE_LATEST)
            except Exception as exc:
                return json_response(503, {"error": f"cannot read the fleet: {describe(exc)}"})
        if path in ("/healthz", "/livez", "/readyz"):
            return json_response(200, {"status": "alive"})
        return json_response(404, {"error": "not found", "paths": ["/metrics", "/healthz"]})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await serve_http(handle, port, host=host or None, token=token)
    log.print(
        f"serving the fleet's metrics on http://{host}:{port}/metrics (queue {settings.queue})",
        markup=False,
        highlight=False,
    )
    try:
        await cached.get()
    except Exception as exc:  # served all the same: /metrics answers 503 until the fleet can be read
        log.print(f"warning: cannot read the fleet yet: {describe(exc)}", markup=False, highlight=False)
    if reader.database_problem:
        log.print(f"warning: dead letters not counted: {reader.database_problem}", markup=False, highlight=False)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await reader.close()
