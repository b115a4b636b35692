"""`taskline relay`: the process around the relay's steps (worker/relay/relay.py).

It loops publish → confirm (→ prune once a minute) while there is work and idles
`TASKLINE_RELAY_POLL_DELAY` when there is none. When Redis or the outbox's database cannot be
used it says so once at WARNING, naming the setting (worker/observe/outages.py), waits with
backoff and tries again until the service is back; what it had locked is rolled back, so nothing
is lost and it catches up. SIGTERM/SIGINT stop it between two steps.

Every `TASKLINE_HEARTBEAT_INTERVAL` it reads the outbox's figures (counts and ages, for the
`taskline_outbox_*` gauges) and writes its heartbeat, `taskline:relay:<queue>:<relay id>`, with
those figures and its own counts, which `taskline status` and the web page show
(worker/tools/relays.py). With `TASKLINE_METRICS_PORT` it serves /metrics, /healthz and /readyz
like a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any, Final

from taskline_producer import keys
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, epoch_ms

from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings, SettingsError, load_settings, redact_url
from worker.logs import configure_logging, get_logger
from worker.observe.health import Health
from worker.observe.heartbeat import BEATS_PER_TTL, metrics_snapshot
from worker.observe.metrics import Metrics
from worker.observe.outages import OutageLog
from worker.observe.service_errors import database_problem
from worker.pipeline.decode import Decoder
from worker.relay.envelopes import Envelopes
from worker.relay.relay import RELAY_CONNECTIONS, RedisUnavailable, Relay
from worker.store.engine import make_outbox_engine

__all__ = ["relay_key_problem", "run_relay", "supervise_relay"]

REDIS_ADVICE: Final = "check that Redis runs and that REDIS_URL points at it (host, port, password, rediss:// for TLS)"
PRUNE_EVERY_S: Final = 60.0
_FIRST_DELAY_S: Final = 0.2
_MAX_DELAY_S: Final = 5.0
_REDIS_TIMEOUT_S: Final = 10.0


def run_relay() -> None:
    """`taskline relay`: run until SIGTERM/SIGINT."""
    settings = load_settings()
    problem = relay_key_problem(settings)
    if problem is not None:
        raise SettingsError(problem)
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(supervise_relay(settings))


def relay_key_problem(settings: Settings) -> str | None:
    """Why the workers would refuse what this relay publishes, read from the settings they share
    (TASKLINE_REQUIRE_SIGNATURES, TASKLINE_SIGNING_KEYS); None when nothing is known to be wrong."""
    key = settings.relay_signing_key
    fix = "set TASKLINE_RELAY_KEY_ID and TASKLINE_RELAY_KEY_SECRET to a key in the workers' TASKLINE_SIGNING_KEYS"
    if key is None:
        if settings.require_signatures:
            return (
                "TASKLINE_REQUIRE_SIGNATURES is on and the relay has no key: every command it publishes would be"
                f" refused; {fix} (docs/outbox.md)"
            )
        return None
    known = settings.signing_keys.get(key.key_id)
    if settings.signing_keys and known is None:
        return (
            f"TASKLINE_RELAY_KEY_ID {key.key_id!r} is not in TASKLINE_SIGNING_KEYS: the workers do not know it; {fix}"
        )
    if known is not None and known.retired:
        return f"TASKLINE_RELAY_KEY_ID {key.key_id!r} is retired in TASKLINE_SIGNING_KEYS: all would be refused; {fix}"
    if known is not None and known.secret.get_secret_value().encode() != key.secret:
        return f"TASKLINE_RELAY_KEY_SECRET is not the secret TASKLINE_SIGNING_KEYS holds for {key.key_id!r}; {fix}"
    return None


def build_relay(settings: Settings, metrics: Metrics | None = None) -> Relay:
    """A relay on its own engine and Redis client (the caller closes both: `close_relay`)."""
    return Relay(
        engine=make_outbox_engine(settings, pool_size=RELAY_CONNECTIONS),
        redis=make_tool_redis(settings.redis_url, _REDIS_TIMEOUT_S),
        queue=settings.queue,
        envelopes=Envelopes(
            Decoder(settings.max_payload_bytes, settings.max_bulk_payload_bytes),
            settings.relay_outcome_ttl,
            settings.relay_signing_key,
        ),
        batch=settings.relay_batch,
        republish_after_s=settings.relay_republish_after,
        retention_s=settings.relay_retention,
        job_ttl_ms=DEFAULT_JOB_TTL_MS,
        clock_ms=epoch_ms,
        metrics=metrics,
    )


async def close_relay(relay: Relay) -> None:
    await relay.engine.dispose()
    await relay.redis.aclose()


async def supervise_relay(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Run the relay until `stopping` is set (by SIGTERM/SIGINT when it is not given)."""
    from worker.observe.http_server import process_ops

    log = get_logger("taskline.relay")
    stopping = stopping or _stop_on_signals(log)
    health = Health(interval=settings.heartbeat_interval)
    metrics = Metrics()
    relay = build_relay(settings, metrics)
    outages = _Outages(
        redis=OutageLog(log, service="Redis", setting="REDIS_URL", url=settings.redis_url, advice=REDIS_ADVICE),
        database=OutageLog(
            log,
            service="the outbox's PostgreSQL",
            setting=settings.outbox_setting,
            url=settings.outbox_url,
            advice=f"check that PostgreSQL runs, that {settings.outbox_setting} points at it, and that the"
            " taskline_outbox table exists there (docs/outbox.md)",
        ),
    )
    log.info(
        "relay started",
        relay_id=health.worker_id,
        queue=settings.queue,
        outbox=redact_url(settings.outbox_url),
        batch=settings.relay_batch,
    )
    async with process_ops(health, metrics, settings.metrics_port, log, host=settings.metrics_host):
        beat = asyncio.create_task(_heartbeats(relay, health, metrics, outages, stopping, settings), name="relay-beat")
        try:
            await _work(relay, outages, stopping, settings, log)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
            with contextlib.suppress(Exception):
                await relay.redis.delete(keys.relay_key(settings.queue, health.worker_id))
            await close_relay(relay)
            log.info("relay stopped", published=relay.counts.published, republished=relay.counts.republished)


class _Outages:
    def __init__(self, *, redis: OutageLog, database: OutageLog) -> None:
        self.redis = redis
        self.database = database

    def failed(self, exc: BaseException, log: Any) -> None:
        if isinstance(exc, RedisUnavailable):
            self.redis.down(exc.__cause__ or exc)
        elif database_problem(exc) is not None or isinstance(exc, OSError):
            self.database.down(exc)
        else:
            log.exception("relay step failed; trying again", error=f"{type(exc).__name__}: {exc}"[:300])


async def _work(relay: Relay, outages: _Outages, stopping: asyncio.Event, settings: Settings, log: Any) -> None:
    loop = asyncio.get_running_loop()
    delay = _FIRST_DELAY_S
    next_prune = loop.time()
    while not stopping.is_set():
        try:
            worked = await relay.publish()
            worked += await relay.confirm()
            if loop.time() >= next_prune:
                await relay.prune()
                next_prune = loop.time() + PRUNE_EVERY_S
        except Exception as exc:  # the step's transaction rolled back: nothing is lost
            outages.failed(exc, log)
            await _pause(stopping, delay)
            delay = min(delay * 2, _MAX_DELAY_S)
            continue
        delay = _FIRST_DELAY_S
        outages.database.up()
        if relay.redis_answered:
            relay.redis_answered = False
            outages.redis.up()
        if worked == 0:
            await _pause(stopping, settings.relay_poll_delay)


async def _heartbeats(
    relay: Relay, health: Health, metrics: Metrics, outages: _Outages, stopping: asyncio.Event, settings: Settings
) -> None:
    interval = settings.heartbeat_interval
    key = keys.relay_key(settings.queue, health.worker_id)
    ttl_ms = int(interval * BEATS_PER_TTL * 1000)
    while not stopping.is_set():
        figures: dict[str, Any] | None = None
        try:
            found = await relay.figures()
            figures = found.as_dict()
            metrics.outbox_figures(
                found.unpublished,
                found.unconfirmed,
                found.invalid,
                {"unpublished": found.oldest_unpublished_s, "unconfirmed": found.oldest_unconfirmed_s},
            )
            health.record_db(None)
        except Exception as exc:
            health.record_db(f"{type(exc).__name__}: {exc}"[:300])
        document = {
            "relay_id": health.worker_id,
            "role": "relay",
            "host": health.host,
            "pid": health.pid,
            "started_at": health.started_at.isoformat(),
            "interval_s": interval,
            "key_ttl_ms": ttl_ms,
            "queue": settings.queue,
            "outbox": figures,
            "counts": {
                "published": relay.counts.published,
                "republished": relay.counts.republished,
                "invalid": relay.counts.invalid,
                "pruned": relay.counts.pruned,
                "confirmed": dict(relay.counts.confirmed),
            },
            "metrics": metrics_snapshot(metrics.registry),
        }
        try:
            async with relay.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, json.dumps(document, default=str), px=ttl_ms)
                pipe.zadd(keys.relays_index_key(settings.queue), {health.worker_id: epoch_ms() / 1000})
                await pipe.execute()
            health.record_redis(None)
        except Exception as exc:
            health.record_redis(f"{type(exc).__name__}: {exc}"[:300])
        await _pause(stopping, interval)


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


def _stop_on_signals(log: Any) -> asyncio.Event:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        if not stopping.is_set():
            log.info("stopping", signal=sig.name)
            stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    return stopping
