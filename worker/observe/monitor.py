"""The heartbeat and the fleet gauges of one running process: the Monitor.

Every worker process has an id of its own (`host:pid:random`) and, while it runs, a background
task (started by the worker's startup hook, cancelled by its shutdown hook) that every
`TASKLINE_HEARTBEAT_INTERVAL` seconds

* runs `SELECT 1` on the database (readiness, worker/observe/health.py),
* writes its heartbeat document (worker/observe/heartbeat.py) with the time to live that keeps it
  readable for as long as its claims can outlive a crash, and adds its id to the queue's index of
  workers;

and a second task that refreshes the gauges nothing else updates, every third interval (15 s
by default): `taskline_queue_depth` (two ZCOUNTs) and `taskline_dead_letters_waiting`.
A clean shutdown deletes the key.

Nothing here runs per job: the job path is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from taskline_producer import keys

from worker.observe.health import Health, check_database, count_dead_letters, queue_depth
from worker.observe.heartbeat import metrics_snapshot
from worker.text import describe_error

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from worker.observe.metrics import Metrics

__all__ = ["Monitor"]

DEAD_LETTERS_EVERY: Final = 3
"""The dead-letter count is refreshed every this many intervals (15 s with the default)."""
QUEUE_DEPTH_EVERY: Final = 3
"""The queue-depth gauge is refreshed every this many intervals (15 s with the default): it is the
same number for every worker, and an idle worker's Redis traffic is kept under 2 commands/s."""
INDEX_REFRESH_EVERY: Final = 2
"""The heartbeat refreshes its index entry on even beats and reads the pause key on odd ones (and
at the first): readers only need the entry to exist (they check the heartbeat key), and its score
only ages out long-gone workers. So a beat stays two commands, an idle worker under 2 commands/s,
and the heartbeat shows a pause within two intervals (a claim sees it at once)."""
INDEX_CLEANUP_EVERY: Final = 12
"""The heartbeat prunes long-gone workers from the index every this many beats (once a minute)."""
INDEX_FORGET_AFTER_S: Final = 600.0
"""An index entry not refreshed for this long (by any worker's clock) is removed."""


def taskline_version() -> str:
    """The project's version (taskline_producer/version.py, the one source both packages read)."""
    from taskline_producer.version import __version__

    return __version__


class Monitor:
    """The heartbeat and gauge tasks of one running worker (see the module docstring)."""

    def __init__(
        self,
        *,
        queue: str,
        health: Health,
        metrics: Metrics,
        redis: Redis,
        engine: AsyncEngine,
        log: Any,
        worker: Any = None,
        secrets_: Iterable[str] = (),  # beyond the engine's and Redis's passwords, always hidden
        role: str = "worker",
        gauges: bool = True,
        running_jobs: Callable[[], Collection[str]] | None = None,
        claim_ttl_s: float | None = None,
        details: Callable[[], dict[str, Any]] | None = None,
        contract_version: int | None = None,  # a worker's TASKLINE_CONTRACT_VERSION
    ) -> None:
        """`running_jobs` returns the ids of the jobs this process runs now (default: the arq
        worker's unfinished tasks); `claim_ttl_s` is how long its claims on them live in Redis
        (default: a command worker's `in_progress_timeout_s`; 0 for other roles); `details`
        adds fields to the heartbeat document (the scheduler's last purge)."""
        self.queue = queue
        self.contract_version = contract_version
        self.role = role
        self.gauges = gauges
        self.health = health
        self.metrics = metrics
        self.redis = redis
        self.engine = engine
        self.log = log
        self.worker = worker
        self.running_jobs = running_jobs or self._worker_running_jobs
        if claim_ttl_s is None:
            claim_ttl_s = float(getattr(worker, "in_progress_timeout_s", 0) or 0) if role == "worker" else 0.0
        self.claim_ttl_s = claim_ttl_s
        self.details = details
        self.version = taskline_version()
        # Errors are reported without the passwords of the connections they came from.
        own = [engine.url.password, redis.connection_pool.connection_kwargs.get("password")]
        self.secrets = tuple(s for s in [*own, *secrets_] if s)
        self.key = keys.heartbeat_key(queue, health.worker_id)
        self.index = keys.workers_index_key(queue)
        self.beats = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def interval(self) -> float:
        return self.health.interval

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._every_interval(self.beat_once), name="taskline-heartbeat")]
        if self.gauges:
            self._tasks.append(asyncio.create_task(self._gauges(), name="taskline-gauges"))

    async def stop(self, *, remove_key: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if remove_key:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.interval):
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.delete(self.key)
                        pipe.zrem(self.index, self.health.worker_id)
                        await pipe.execute()

    async def _every_interval(self, work: Callable[[], Any]) -> None:
        while True:
            started = time.monotonic()
            await work()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def beat_once(self) -> None:
        """Check the database, then write the heartbeat. Never raises (but is cancellable)."""
        db_error = await check_database(self.engine, self.interval, self.secrets)
        if self.health.record_db(db_error):
            if db_error:
                self.log.warning("database check failing: not ready", error=db_error)
            else:
                self.log.info("database check passing")
        try:
            async with asyncio.timeout(self.interval):
                await self.write_heartbeat()
            redis_error = None
        except Exception as exc:
            redis_error = describe_error(exc, self.secrets)
        if self.health.record_redis(redis_error):
            if redis_error:
                self.log.warning("could not write the heartbeat to Redis: not ready", error=redis_error)
            else:
                self.log.info("heartbeat written to Redis", worker_id=self.health.worker_id, key=self.key)

    @property
    def key_ttl_s(self) -> float:
        """Three intervals; plus the claim expiry and one interval when claims must outlive a crash."""
        if self.claim_ttl_s <= 0:
            return self.health.max_age
        return self.health.max_age + self.claim_ttl_s + self.interval

    def _worker_running_jobs(self) -> list[str]:
        if self.worker is None:
            return []
        return [job_id for job_id, task in self.worker.tasks.items() if not task.done()]

    async def write_heartbeat(self) -> None:
        ttl_ms = int(self.key_ttl_s * 1000)
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            read_pause = self.beats % INDEX_REFRESH_EVERY == 1 or self.beats == 0
            if read_pause:
                pipe.exists(keys.paused_key(self.queue))
            pipe.set(self.key, json.dumps(self.document()), px=ttl_ms)
            if self.beats % INDEX_REFRESH_EVERY == 0:
                pipe.zadd(self.index, {self.health.worker_id: now})
            if self.beats % INDEX_CLEANUP_EVERY == 0:
                # Forget workers that stopped beating long ago. Readers check that the key exists,
                # so the index only needs eventual cleanup; the wide margin absorbs clock differences.
                forget_before = now - max(INDEX_FORGET_AFTER_S, 10 * self.health.max_age)
                pipe.zremrangebyscore(self.index, "-inf", f"({forget_before}")
            self.beats += 1
            replies = await pipe.execute()
        if read_pause:
            self.health.paused = bool(replies[0])
            self.metrics.claiming_paused.labels(self.queue).set(1 if self.health.paused else 0)

    def document(self) -> dict[str, Any]:
        health, worker = self.health, self.worker
        running_ids = sorted(self.running_jobs())
        running: int | None = len(running_ids)
        done = failed = retried = None
        if worker is not None:
            done, failed, retried = worker.jobs_complete, worker.jobs_failed, worker.jobs_retried
        elif not running_ids:
            running = None
        document = {
            "worker_id": health.worker_id,
            "role": self.role,
            "version": self.version,
            "queue": self.queue,
            "host": health.host,
            "pid": health.pid,
            "started_at": health.started_at.isoformat(),
            "last_beat": datetime.now(UTC).isoformat(),
            "interval_s": health.interval,
            "key_ttl_ms": int(self.key_ttl_s * 1000),
            "contract_version": self.contract_version,  # the newest contract version it applies
            "jobs_running": running,
            "running_job_ids": running_ids,
            "jobs_done": done,
            "jobs_failed": failed,
            "jobs_retried": retried,
            "db_ok": health.db_error is None,
            "db_error": health.db_error,
            "stopping": health.stopping,
            "claiming_paused": health.paused,  # as of the previous beat or the last claim
            "metrics": metrics_snapshot(self.metrics.registry),
        }
        if self.details is not None:
            document.update(self.details())
        return document

    async def _gauges(self) -> None:
        beat = 0
        while True:
            started = time.monotonic()
            if beat % QUEUE_DEPTH_EVERY == 0:
                await self.update_queue_depth()
            if beat % DEAD_LETTERS_EVERY == 0:
                await self.update_dead_letters()
            beat += 1
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def update_queue_depth(self) -> None:
        try:
            async with asyncio.timeout(self.interval):
                ready, deferred = await queue_depth(self.redis, self.queue)
        except Exception:
            return  # the heartbeat reports Redis trouble; a gauge keeps its last value
        self.metrics.queue_depth.labels(self.queue, "ready").set(ready)
        self.metrics.queue_depth.labels(self.queue, "deferred").set(deferred)

    async def update_dead_letters(self) -> None:
        try:
            async with asyncio.timeout(self.interval), self.engine.connect() as conn:
                count = await count_dead_letters(conn)
        except Exception:
            return  # the database check reports it
        self.metrics.dead_letters_waiting.set(count)
