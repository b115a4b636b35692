"""Keep an arq worker loop running across Redis outages, until a signal stops it.

Stock arq exits when Redis goes away. Both taskline process types (`taskline worker` and
`taskline scheduler`) run their arq loop through `run_until_stopped`, which rebuilds the worker
and starts again with exponential backoff (reset after 30 s without an outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.worker import Worker

from worker.arq_seam.overrides import REDIS_LOST

__all__ = ["run_until_stopped"]

W = TypeVar("W", bound=Worker)

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 10.0
_STABLE_S = 30.0


async def run_until_stopped(
    *,
    build: Callable[[], W],
    request_stop: Callable[[W, asyncio.Event, signal.Signals], None],
    close: Callable[[W], Awaitable[None]],
    stopping: asyncio.Event,
    log: Any,
    before_start: Callable[[], Awaitable[None]] | None = None,
    on_lost: Callable[[W], None] | None = None,
) -> None:
    """Run `build()`'s loop; on a lost Redis connection cancel its jobs (`on_lost` sees them
    first), wait with backoff, and start a new one. SIGTERM/SIGINT call `request_stop`."""
    loop = asyncio.get_running_loop()
    delay = _FIRST_DELAY_S
    while not stopping.is_set():
        worker = build()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop, worker, stopping, sig)
        if before_start is not None:
            await before_start()
        started = loop.time()
        worker.main_task = asyncio.create_task(worker.main())
        try:
            await worker.main_task
            return
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
            return
        except REDIS_LOST as exc:
            if stopping.is_set():
                return
            if loop.time() - started > _STABLE_S:
                delay = _FIRST_DELAY_S  # a new outage after a stable period starts the backoff afresh
            log.warning("Redis connection lost; reconnecting", error=type(exc).__name__, retry_in_s=delay)
            if on_lost is not None:
                on_lost(worker)
            for task in worker.tasks.values():
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            delay = min(delay * 2, _MAX_DELAY_S)
        finally:
            await close(worker)
