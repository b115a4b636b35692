"""Per-process health: a heartbeat key in Redis, liveness, readiness and the fleet gauges.

Every worker process has an id of its own (`host:pid:random`) and, while it runs, a background
task (started by the worker's startup hook, cancelled by its shutdown hook) that every
`TASKLINE_HEARTBEAT_INTERVAL` seconds

* runs `SELECT 1` on the database (readiness),
* writes `taskline:worker:<queue>:<worker id>` = a JSON document (ids, job counts, the ids of
  the jobs it is running, database state, the newest contract version it applies and a snapshot
  of the worker's metrics), and adds the id to the index `taskline:workers:<queue>` (a sorted
  set), so that `taskline health` and `taskline metrics` find the live workers without scanning
  the keyspace;

and a second task that refreshes the gauges nothing else updates: `taskline_queue_depth`
(two ZCOUNTs) every interval and `taskline_dead_letters_waiting` every third interval.
A clean shutdown deletes the key. A worker is live while its key is younger than three intervals;
the document records the time to live it was written with (`key_ttl_ms`), so readers judge its
age from the key's PTTL, measured by Redis, whatever the machines' clocks say. A command worker
writes its key with a longer time to live, three intervals plus its jobs' claim expiry plus one
interval: after a crash, its last document (with its running job ids) stays readable until every
claim it held has expired, which is how `taskline status` and `taskline health` show the claims
waiting to expire (worker/tools/claims.py) without scanning the keyspace, at no command more per
heartbeat.

Nothing here runs per job: the job path is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from taskline_producer import keys
from taskline_producer.wire import epoch_ms

if TYPE_CHECKING:  # kept out of the import of `taskline health`, an exec probe that should start fast
    from prometheus_client import CollectorRegistry
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from worker.observe.metrics import Metrics

__all__ = [
    "BEATS_PER_TTL",
    "FLEET_METRICS",
    "Health",
    "Monitor",
    "check_database",
    "count_dead_letters",
    "heartbeat_key",
    "metrics_snapshot",
    "new_worker_id",
    "queue_depth",
    "scheduler_queue_name",
    "this_host",
    "workers_index_key",
]

BEATS_PER_TTL: Final = 3
"""A heartbeat key lives this many intervals; liveness and readiness allow the same age."""
DEAD_LETTERS_EVERY: Final = 3
QUEUE_DEPTH_EVERY: Final = 3
"""The queue-depth gauge is refreshed every this many intervals (15 s with the default): it is the
same number for every worker, and an idle worker's Redis traffic is kept under 2 commands/s."""
INDEX_CLEANUP_EVERY: Final = 12
"""The heartbeat prunes long-gone workers from the index every this many beats (once a minute)."""
"""The dead-letter count is refreshed every this many intervals (15 s with the default)."""
EXACT_COUNT_BELOW: Final = 100_000
"""Above this many rows (by the planner's estimate) the dead-letter gauge uses the estimate."""
INDEX_FORGET_AFTER_S: Final = 600.0
"""An index entry not refreshed for this long (by any worker's clock) is removed."""
FLEET_METRICS: Final = frozenset(
    {"taskline_queue_depth", "taskline_dead_letters_waiting", "taskline_claims_waiting_to_expire"}
)
"""Gauges that describe the queue and the table, not one worker: not part of a worker's snapshot."""


scheduler_queue_name = keys.scheduler_queue
"""The scheduler's own arq queue for the command queue `queue`; its heartbeats are kept under
this name too, apart from the workers'."""
heartbeat_key = keys.heartbeat_key
workers_index_key = keys.workers_index_key


def this_host() -> str:
    """The name a worker reports as its host: Heroku's dyno name (`worker.1`) when there is one,
    else the hostname (a Kubernetes pod's name)."""
    return os.environ.get("DYNO") or socket.gethostname()


def new_worker_id() -> str:
    return f"{this_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def taskline_version() -> str:
    """The installed taskline's version (read once per process, by the Monitor)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("taskline")
    except PackageNotFoundError:
        return "unknown"


def _now() -> datetime:
    return datetime.now(UTC)


def describe_error(exc: BaseException, secrets_: Iterable[str] = ()) -> str:
    """`Type: first line of the message`, without any of `secrets_` (passwords) in it."""
    message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    for secret in secrets_:
        if secret:
            message = message.replace(secret, "***")
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class Health:
    """What this process knows about itself; read by /healthz, /readyz and the heartbeat.

    Liveness is the process's own event loop: `pulse()` is stamped every interval by a task that
    lives as long as the process (also while the worker reconnects to Redis). Readiness is the
    outside world: the last heartbeat write to Redis and the last `SELECT 1` both succeeded less
    than three intervals ago, and the worker is not stopping."""

    interval: float
    worker_id: str = field(default_factory=new_worker_id)
    host: str = field(default_factory=this_host)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=_now)
    clock: Callable[[], float] = time.monotonic
    last_pulse: float | None = None
    redis_ok_at: float | None = None
    redis_error: str | None = "no heartbeat written yet"
    db_ok_at: float | None = None
    db_error: str | None = "database not checked yet"
    stopping: bool = False

    @property
    def max_age(self) -> float:
        return self.interval * BEATS_PER_TTL

    def pulse(self) -> None:
        self.last_pulse = self.clock()

    async def run_pulse(self) -> None:
        while True:
            self.pulse()
            await asyncio.sleep(self.interval)

    def _age(self, at: float | None) -> float | None:
        return None if at is None else round(self.clock() - at, 3)

    def _fresh(self, at: float | None) -> bool:
        age = self._age(at)
        return age is not None and age <= self.max_age

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        alive = self._fresh(self.last_pulse)
        return alive, {
            "status": "alive" if alive else "stalled",
            "worker_id": self.worker_id,
            "last_pulse_age_s": self._age(self.last_pulse),
            "max_age_s": self.max_age,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons = []
        if self.stopping:
            reasons.append("stopping: finishing running jobs")
        if not self._fresh(self.redis_ok_at):
            reasons.append(f"redis: {self.redis_error or 'no heartbeat written recently'}")
        if not self._fresh(self.db_ok_at):
            reasons.append(f"database: {self.db_error or 'no successful check recently'}")
        return not reasons, {
            "status": "ready" if not reasons else "not ready",
            "worker_id": self.worker_id,
            "reasons": reasons,
            "redis_ok_age_s": self._age(self.redis_ok_at),
            "db_ok_age_s": self._age(self.db_ok_at),
            "max_age_s": self.max_age,
        }

    def record_db(self, error: str | None) -> bool:
        """Record a database check; True when the state changed (worth a log line)."""
        was_ok = self.db_error is None
        if error is None:
            self.db_ok_at = self.clock()
        self.db_error = error
        return was_ok != (error is None)

    def record_redis(self, error: str | None) -> bool:
        was_ok = self.redis_error is None
        if error is None:
            self.redis_ok_at = self.clock()
        self.redis_error = error
        return was_ok != (error is None)


async def check_database(engine: AsyncEngine, limit_s: float, secrets_: Iterable[str] = ()) -> str | None:
    """`SELECT 1` through the worker's pool within `limit_s`; None when it worked, else why not."""
    from sqlalchemy import text

    try:
        async with asyncio.timeout(limit_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return describe_error(exc, secrets_)
    return None


async def count_dead_letters(conn: AsyncConnection) -> int:
    """Rows in dead_letter: exact below EXACT_COUNT_BELOW rows, the planner's estimate above."""
    from sqlalchemy import func, select, text

    from worker.store.models import DeadLetter, table_of

    table = table_of(DeadLetter)
    estimate = (  # the catalog's estimate (pg_class is no model), of the model's table
        await conn.execute(text(f"SELECT reltuples::bigint FROM pg_class WHERE oid = '{table.name}'::regclass"))
    ).scalar()
    if estimate is not None and estimate >= EXACT_COUNT_BELOW:
        return int(estimate)
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def queue_depth(redis: Redis, queue: str) -> tuple[int, int]:
    """(ready, deferred): jobs runnable now, and jobs scheduled for later (retries)."""
    now = epoch_ms()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue, "-inf", now)
        pipe.zcount(queue, f"({now}", "+inf")
        ready, deferred = await pipe.execute()
    return int(ready), int(deferred)


def metrics_snapshot(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """The registry's samples as JSON-able families (without the fleet gauges and `_created`)."""
    families = []
    for family in registry.collect():
        if family.name in FLEET_METRICS:
            continue
        samples = [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")]
        if samples:
            families.append(
                {"name": family.name, "type": family.type, "help": family.documentation, "samples": samples}
            )
    return families


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
        self.key = heartbeat_key(queue, health.worker_id)
        self.index = workers_index_key(queue)
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
            pipe.set(self.key, json.dumps(self.document()), px=ttl_ms)
            pipe.zadd(self.index, {self.health.worker_id: now})
            if self.beats % INDEX_CLEANUP_EVERY == 0:
                # Forget workers that stopped beating long ago. Readers check that the key exists,
                # so the index only needs eventual cleanup; the wide margin absorbs clock differences.
                forget_before = now - max(INDEX_FORGET_AFTER_S, 10 * self.health.max_age)
                pipe.zremrangebyscore(self.index, "-inf", f"({forget_before}")
            self.beats += 1
            await pipe.execute()

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
            "last_beat": _now().isoformat(),
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
