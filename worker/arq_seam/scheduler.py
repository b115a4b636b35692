"""`taskline scheduler`: the process type that runs the scheduled purge.

Why a process of its own: arq's crash recovery of a job waits for the longest timeout of any
function on that worker (+ 10 s). A purge job on the command workers would stretch the recovery
of every crashed command from `TASKLINE_JOB_TIMEOUT` + 15 s to the purge's budget + margin + 10 s;
and a purge job on the command queue would be claimed by command workers anyway. So the
scheduler is an arq worker on a queue of its own, `<TASKLINE_QUEUE>:scheduler`, with one cron
job, `purge`, and nothing else.

Exactly once per tick, whatever the number of scheduler processes: the cron job is `unique`, so
every scheduler enqueues the same job id for a tick (`purge:<tick epoch ms>`) and arq's
dedup keeps one. arq alone can still run a tick twice: a scheduler whose loop was stalled past
the tick enqueues it again after the first run finished (the job key is gone by then). So the
job also claims the tick with `SET <queue>:scheduler:ran:<job id> NX` (kept two days) before
purging, and a second run of the same tick only logs that it skipped.

Its arq timeout is `TASKLINE_PURGE_TIME_BUDGET` + 15 s; the purge stops itself inside the budget.
A scheduler that dies mid-purge loses at most one batch (rolled back); the tick is not retried
(`max_tries=1`) and the next tick carries on. Missed ticks (no scheduler running) are not caught
up: the next run deletes everything due. `run_at_startup` is off: restarting schedulers do not
purge on every deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from datetime import UTC
from typing import Any, Final, cast

from arq import cron
from arq.worker import Worker
from taskline_producer import keys
from taskline_producer.contract import dumps

from worker.arq_seam.supervisor import connector_for, run_until_stopped
from worker.config.redis_connection import arq_redis_settings
from worker.config.retention import schedule_for
from worker.config.settings import Settings, load_settings, redact_url
from worker.logs import configure_logging, get_logger
from worker.observe.health import Health
from worker.observe.metrics import Metrics
from worker.observe.monitor import Monitor
from worker.purge.plan import PurgePlan, PurgeSummary
from worker.purge.purger import make_purge_engine, purge
from worker.tools.fleet_watch import FleetWatch

__all__ = [
    "PURGE_JOB",
    "PURGE_TIMEOUT_MARGIN_S",
    "build_scheduler",
    "purge_job",
    "run_scheduler",
    "scheduler_queue",
    "scheduler_settings",
    "supervise_scheduler",
]

PURGE_JOB: Final = "purge"
PURGE_TIMEOUT_MARGIN_S: Final = 15.0
"""arq's timeout for the purge job is its time budget plus this; the purge stops itself first."""
_TICK_CLAIM_TTL_S: Final = 2 * 86400
_MAX_JOB_BYTES: Final = 4096

PurgeObserver = Callable[[str, PurgeSummary | None], None]
"""ctx["purge_observer"] (tests): called per run with the job id and the summary, None if skipped."""


def scheduler_queue(settings: Settings) -> str:
    return keys.scheduler_queue(settings.queue)


def _decode(raw: bytes) -> dict[str, Any]:
    """The scheduler queue's job_deserializer: JSON only, small, never a pickle."""
    if len(raw) > _MAX_JOB_BYTES or raw[:1] == b"\x80":
        raise ValueError("not a scheduler job (too large, or a pickle)")
    job = json.loads(raw)
    if not isinstance(job, dict) or job.get("f") != PURGE_JOB:
        raise ValueError("not a scheduler job")
    return cast(dict[str, Any], job)


async def purge_job(ctx: dict[str, Any]) -> dict[str, Any] | None:
    """The cron job: claim the tick, then run one purge with the settings' plan."""
    settings: Settings = ctx["settings"]
    job_id: str = ctx["job_id"]
    log = get_logger("taskline.purge").bind(job_id=job_id)
    observer: PurgeObserver | None = ctx.get("purge_observer")
    claim = keys.scheduler_tick_key(scheduler_queue(settings), job_id)
    if not await ctx["redis"].set(claim, b"1", nx=True, ex=_TICK_CLAIM_TTL_S):
        log.info("purge skipped: this tick already ran")
        if observer is not None:
            observer(job_id, None)
        return None
    summary = await purge(ctx["purge_engine"], PurgePlan.scheduled(settings), metrics=ctx["metrics"], log=log)
    ctx["last_purge"] = {"job_id": job_id, **summary.as_dict()}  # the heartbeat shows it (`taskline status`)
    if observer is not None:
        observer(job_id, summary)
    return summary.as_dict()


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    engine = ctx["purge_engine"] = make_purge_engine(settings)
    metrics = ctx.setdefault("metrics", Metrics())
    health: Health = ctx.setdefault("health", Health(interval=settings.heartbeat_interval))
    log = get_logger("taskline.scheduler")
    # A heartbeat of its own (kept apart from the workers', under the scheduler's queue name):
    # `taskline health --scheduler` sees it, and `taskline metrics` shows its purge metrics.
    monitor = Monitor(
        queue=scheduler_queue(settings),
        health=health,
        metrics=metrics,
        redis=ctx["redis"],
        engine=engine,
        log=log,
        worker=ctx.get("worker"),
        role="scheduler",
        gauges=False,
        details=lambda: {"last_purge": ctx.get("last_purge")},
    )
    ctx["monitor"] = monitor
    monitor.start()
    # The fleet's watch (claims waiting to expire after a crash, the history behind the plots)
    # runs here, once for the fleet, instead of on every worker.
    watch = ctx["fleet_watch"] = FleetWatch(
        ctx["redis"],
        settings.queue,
        interval_s=settings.heartbeat_interval,
        sample_every_s=settings.history_sample_s,
        keep_s=settings.history_keep,
        log=log,
        gauge=metrics.claims_waiting,
    )
    watch.start()
    log.info(
        "scheduler started",
        worker_id=health.worker_id,
        queue=scheduler_queue(settings),
        database=redact_url(settings.database_url),
        redis=redact_url(settings.redis_url),
        purge_every_minutes=settings.purge_every_minutes,
        purge_time_budget_s=settings.purge_time_budget,
    )


async def _shutdown(ctx: dict[str, Any]) -> None:
    watch: FleetWatch | None = ctx.pop("fleet_watch", None)
    if watch is not None:
        await watch.stop()
    monitor: Monitor | None = ctx.pop("monitor", None)
    if monitor is not None:
        await monitor.stop(remove_key=True)
    engine = ctx.pop("purge_engine", None)
    if engine is not None:
        await engine.dispose()
        get_logger("taskline.scheduler").info("scheduler stopped")


def scheduler_settings(
    settings: Settings, *, schedule: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """arq worker keyword arguments for the scheduler; `schedule` replaces the cron fields
    (e.g. `{"minute": None, "second": {0, 2, 4}}` in tests)."""
    timeout = settings.purge_time_budget + PURGE_TIMEOUT_MARGIN_S
    job = cron(
        cast(Any, purge_job),
        name=PURGE_JOB,
        unique=True,
        run_at_startup=False,
        timeout=timeout,
        max_tries=1,
        keep_result=0,
        **(schedule if schedule is not None else schedule_for(settings.purge_every_minutes)),
    )
    values: dict[str, Any] = {
        "functions": [],
        "cron_jobs": [job],
        "queue_name": scheduler_queue(settings),
        "redis_settings": arq_redis_settings(settings.redis_url),
        "job_serializer": dumps,
        "job_deserializer": _decode,
        "max_jobs": 1,
        "job_timeout": timeout,
        "poll_delay": 0.5,  # cron ticks are enqueued up to 1 s ahead; no need to poll faster
        "keep_result": 0,
        "max_tries": 1,
        "health_check_interval": 60,
        "log_results": False,
        "timezone": UTC,
        "on_startup": _startup,
        "on_shutdown": _shutdown,
        "ctx": {"settings": settings},
    }
    values.update(overrides)
    return values


def build_scheduler(settings: Settings, **overrides: Any) -> Worker:
    scheduler = Worker(**scheduler_settings(settings, **overrides))
    scheduler.ctx.setdefault("worker", scheduler)  # the heartbeat reports its job counts
    return scheduler


def run_scheduler() -> None:
    """`taskline scheduler`: run until SIGTERM/SIGINT."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(supervise_scheduler(settings))


async def supervise_scheduler(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Run the scheduler; reconnect with backoff when Redis goes away, until a signal stops it.

    On SIGTERM a running purge is cancelled at once: its open batch rolls back, nothing is lost.
    Like a worker, it serves /metrics, /healthz and /readyz on TASKLINE_METRICS_PORT (if set)."""
    from worker.observe.http_server import process_ops

    health = Health(interval=settings.heartbeat_interval)
    metrics = Metrics()
    log = get_logger("taskline.scheduler")
    async with process_ops(health, metrics, settings.metrics_port, log, host=settings.metrics_host):
        await run_until_stopped(
            connect=connector_for(settings.redis_url, scheduler_settings(settings)),
            build=lambda pool: build_scheduler(
                settings,
                redis_pool=pool,
                handle_signals=False,
                ctx={"settings": settings, "health": health, "metrics": metrics},
            ),
            request_stop=_stop,
            close=_close,
            stopping=stopping or asyncio.Event(),
            log=log,
            redis_url=settings.redis_url,
        )


def _stop(worker: Worker, stopping: asyncio.Event, sig: signal.Signals) -> None:
    if not stopping.is_set():
        stopping.set()
        health: Health | None = worker.ctx.get("health")
        if health is not None:
            health.stopping = True  # not ready from now on; the heartbeat says so
        get_logger("taskline.scheduler").info("stopping", signal=sig.name)
        worker.handle_sig(sig)


async def _close(worker: Worker) -> None:
    """The supervisor owns (and closes) the pool; arq's `close` would close it too."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if "purge_engine" in worker.ctx:
        await _shutdown(worker.ctx)
    with contextlib.suppress(Exception):
        await worker.pool.delete(worker.health_check_key)
