"""Keep an arq worker loop running across Redis outages, until a signal stops it.

Stock arq exits when Redis goes away, and at start-up counts down "5 retries remaining" and
gives up. Both taskline process types (`taskline worker`, `taskline scheduler`) run their arq
loop through `run_until_stopped`, which owns the Redis connection pool (arq is handed it as
`redis_pool`, a public setting), connects with backoff for as long as it takes, rebuilds the
worker after an outage, and says so in two log lines per outage (worker/observe/outages.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.config.redis_connection import connect_arq_pool
from worker.observe.outages import OutageLog

__all__ = ["REDIS_LOST", "connector_for", "run_until_stopped"]

W = TypeVar("W", bound=Worker)

REDIS_LOST: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
"""What arq's loop raises when its Redis connection itself fails. Nothing a job does reaches the
loop (worker/arq_seam/job_runner.py), so these always mean the connection."""
UNREACHABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
"""What connecting to Redis raises when it cannot: every one of them means "not yet"."""

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 10.0
_STABLE_S = 30.0
REDIS_ADVICE = (
    "check that Redis runs and that REDIS_URL points at it (host, port, password, rediss:// for TLS;"
    " for Sentinel, that the sentinels run and know a master of that name)"
)


def connector_for(redis_url: str, options: dict[str, Any]) -> Callable[[], Awaitable[ArqRedis]]:
    """How to connect the pool for a Worker with these options (worker/config/redis_connection.py:
    one Redis, or a Sentinel group's master), without arq's own retries (its countdown gives up;
    `run_until_stopped` retries for as long as it takes). Each connect asks the sentinels afresh,
    so the loop rebuilt after a failover runs on the new master."""

    async def connect() -> ArqRedis:
        return await connect_arq_pool(
            redis_url,
            options["redis_settings"],
            job_serializer=options.get("job_serializer"),
            job_deserializer=options.get("job_deserializer"),
            queue_name=options["queue_name"],
        )

    return connect


async def run_until_stopped(
    *,
    connect: Callable[[], Awaitable[ArqRedis]],
    build: Callable[[ArqRedis], W],
    request_stop: Callable[[W, asyncio.Event, signal.Signals], None],
    close: Callable[[W], Awaitable[None]],
    stopping: asyncio.Event,
    log: Any,
    redis_url: str,
    before_start: Callable[[], Awaitable[None]] | None = None,
    on_lost: Callable[[W], None] | None = None,
) -> None:
    """Connect, run `build(pool)`'s loop; when Redis goes away, cancel its jobs (`on_lost` sees
    them first), wait with backoff, and start again. SIGTERM/SIGINT call `request_stop`."""
    loop = asyncio.get_running_loop()
    outage = OutageLog(log, service="Redis", setting="REDIS_URL", url=redis_url, advice=REDIS_ADVICE)
    delay = _FIRST_DELAY_S

    async def pause() -> None:
        nonlocal delay
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=delay)
        delay = min(delay * 2, _MAX_DELAY_S)

    while not stopping.is_set():
        try:
            pool = await connect()
        except UNREACHABLE as exc:
            outage.down(exc)
            await pause()
            continue
        outage.up()
        worker = build(pool)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop, worker, stopping, sig)
        started = loop.time()
        try:
            if before_start is not None:
                await before_start()
            worker.main_task = asyncio.create_task(worker.main())
            await worker.main_task
            return
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
            return
        except Exception as exc:
            if stopping.is_set():
                return
            if loop.time() - started > _STABLE_S:
                delay = _FIRST_DELAY_S  # a new outage after a stable period starts the backoff afresh
            if isinstance(exc, REDIS_LOST):
                outage.down(exc, what="running jobs were released; ")
            else:
                log.exception("the worker loop failed; starting it again", retry_in_s=delay)
            if on_lost is not None:
                on_lost(worker)
            for task in worker.tasks.values():
                task.cancel()
            await pause()
        finally:
            await close(worker)
            with contextlib.suppress(Exception):
                await pool.aclose()
