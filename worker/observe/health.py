"""A process's own health, and the probes it and the operations tools run.

`Health` is what /healthz and /readyz answer (worker/observe/http_server.py): liveness is the
process's own event loop, readiness the last heartbeat write to Redis and the last database check
(both made by worker/observe/monitor.py). The probes: `check_database` (`SELECT 1`),
`count_dead_letters` and `queue_depth`, which the Monitor's gauges, `taskline status` and the
fleet's page read.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from taskline_producer.wire import epoch_ms

from worker.observe.heartbeat import BEATS_PER_TTL
from worker.text import describe_error

if TYPE_CHECKING:  # kept out of the import of `taskline health`, an exec probe that should start fast
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "Health",
    "check_database",
    "count_dead_letters",
    "new_worker_id",
    "queue_depth",
    "this_host",
]

EXACT_COUNT_BELOW: Final = 100_000
"""Above this many rows (by the planner's estimate) the dead-letter gauge uses the estimate."""


def this_host() -> str:
    """The name a worker reports as its host: Heroku's dyno name (`worker.1`) when there is one,
    else the hostname (a Kubernetes pod's name)."""
    return os.environ.get("DYNO") or socket.gethostname()


def new_worker_id() -> str:
    return f"{this_host()}:{os.getpid()}:{secrets.token_hex(3)}"


def _now() -> datetime:
    return datetime.now(UTC)


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
