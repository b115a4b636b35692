"""The fleet watch: what one long-running process (the scheduler, the web page) does for the whole
fleet twice per heartbeat interval, so that the workers do not have to.

* `ClaimWatch.check()`: logs claims waiting to expire after a crash and their pickup, and keeps
  the `taskline_claims_waiting_to_expire` gauge (worker/tools/claims.py);
* once per `TASKLINE_HISTORY_SAMPLE_S`: a history sample (worker/tools/history.py).

Per half interval it reads the heartbeat index and the heartbeats (one ZRANGE, then one pipeline of
a GET and a PTTL per worker), plus one pipelined GET and PTTL per job a crashed worker held.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.asyncio import Redis

from worker.observe.health import queue_depth
from worker.text import describe_error
from worker.tools.claims import ClaimWatch, StrandedClaim
from worker.tools.fleet import Heartbeats, read_heartbeats
from worker.tools.history import KEEP_S, take_sample

__all__ = ["FleetWatch", "sample_now"]


async def sample_now(
    redis: Redis,
    queue: str,
    every_s: float,
    claims: list[StrandedClaim] | None = None,
    heartbeats: Heartbeats | None = None,
    keep_s: float = KEEP_S,
) -> dict[str, Any] | None:
    """Take this period's history sample (unless another process did), with the queue's gauges."""
    if heartbeats is None:
        heartbeats = await read_heartbeats(redis, queue)
    ready, deferred = await queue_depth(redis, queue)
    gauges = {
        "ready": ready,
        "deferred": deferred,
        "running": sum(int(w.get("jobs_running") or 0) for w in heartbeats.live),
        "workers": len(heartbeats.live),
        "claims_waiting": len(claims or []),
    }
    return await take_sample(redis, queue, heartbeats.live, every_s=every_s, gauges=gauges, keep_s=keep_s)


class FleetWatch:
    def __init__(
        self,
        redis: Redis,
        queue: str,
        *,
        interval_s: float,
        sample_every_s: float,
        log: Any,
        gauge: Any = None,
        keep_s: float = KEEP_S,
    ) -> None:
        self.keep_s = keep_s
        self.redis = redis
        self.queue = queue
        self.interval_s = interval_s
        self.sample_every_s = sample_every_s
        self.log = log
        self.claims = ClaimWatch(redis, queue, log, gauge)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="taskline-fleet-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        last_sample_slot = -1
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(max(self.interval_s, 1.0)):
                    heartbeats = await read_heartbeats(self.redis, self.queue)
                    claims = await self.claims.check(heartbeats)
                    slot = int(time.time() // self.sample_every_s)
                    if slot != last_sample_slot:
                        await sample_now(self.redis, self.queue, self.sample_every_s, claims, heartbeats, self.keep_s)
                        last_sample_slot = slot
                if self._failing:
                    self.log.info("fleet watch reading Redis again")
                self._failing = False
            except Exception as exc:
                if not self._failing:  # one line per outage, not one per interval
                    self.log.warning("fleet watch cannot read Redis; retrying", error=describe_error(exc))
                self._failing = True
            # Twice per heartbeat interval: a silent worker's stuck claims are seen within half an
            # interval of the moment it has missed its beats (worker/tools/claims.py).
            period = min(self.interval_s / 2, self.sample_every_s)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
