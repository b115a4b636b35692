"""Wiring: the arq worker that runs taskline's jobs, and its startup and shutdown.

`worker_settings()` returns what arq's `WorkerSettings` holds (a plain dict, since arq does
not read inherited class attributes); `WorkerSettings` is the same as a class for
`arq worker.app.WorkerSettings`. `run_worker()` is what `taskline worker` runs: it keeps the
process up across Redis outages, which stock arq does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, cast

from arq import func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskline_producer.contract import BULK_JOB, COMMAND_JOBS, dumps
from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX

from worker.arq_seam.overrides import TasklineWorker
from worker.arq_seam.redis_settings import arq_redis_settings
from worker.arq_seam.supervisor import run_until_stopped
from worker.logs import configure_logging, get_logger
from worker.ops.health import Health, Monitor
from worker.ops.metrics import Metrics
from worker.pipeline.decode import REJECT_JOB, Decoder
from worker.pipeline.failures import Kind, RetryPolicy
from worker.pipeline.group_commit import GroupCommitter
from worker.pipeline.jobs import apply_commands_job, command_job, reject_job
from worker.pipeline.runtime import Runtime
from worker.settings import Settings, load_settings, redact_url
from worker.store.engine import make_engine, make_sessions

__all__ = ["TasklineWorker", "build_worker", "run_worker", "supervise", "worker_settings"]

ARQ_TIMEOUT_MARGIN_S = 5.0
"""arq's own job timeout is ours plus this: taskline's timeout always fires first."""


def arq_max_tries(policy: RetryPolicy) -> int:
    """Enough arq tries for taskline's own retry budgets, which can follow one another (not-yet
    retries, then transient ones), plus ten crashed tries; beyond it arq gives up (a dead letter)."""
    attempt = 1
    while policy.should_retry(Kind.NOT_YET, attempt):
        attempt += 1
    return attempt + policy.transient_tries + 10


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        transient_tries=settings.transient_tries,
        not_yet_window=settings.not_yet_window,
        base_delay=settings.retry_base_delay,
        max_delay=settings.retry_max_delay,
    )


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    engine = make_engine(settings)
    sessions = make_sessions(engine)
    log = get_logger("taskline.worker")
    ctx["runtime"] = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        committer=GroupCommitter(sessions, max_batch=settings.batch_max),
        policy=retry_policy(settings),
        metrics=ctx.get("metrics") or Metrics(),
        redis=ctx["redis"],
        log=log,
        log_each_command=settings.log_level == "DEBUG",
    )
    # Health: process-wide when supervise() made it (it outlives reconnects), else this worker's.
    health: Health = ctx.setdefault("health", Health(interval=settings.heartbeat_interval))
    monitor = Monitor(
        queue=settings.queue,
        health=health,
        metrics=ctx["runtime"].metrics,
        redis=ctx["redis"],
        engine=engine,
        log=log,
        worker=ctx.get("worker"),
    )
    ctx["monitor"] = monitor
    monitor.start()
    log.info(
        "worker started",
        worker_id=health.worker_id,
        queue=settings.queue,
        database=redact_url(settings.database_url),
        redis=redact_url(settings.redis_url),
        max_jobs=settings.max_jobs,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime | None = ctx.get("runtime")
    if runtime is None:
        return
    monitor: Monitor | None = ctx.pop("monitor", None)
    if monitor is not None:
        await monitor.stop(remove_key=True)
    await runtime.committer.wait_idle()
    await runtime.engine.dispose()
    runtime.log.info("worker stopped")


def worker_settings(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """arq worker keyword arguments for these settings."""
    policy = retry_policy(settings)
    arq_timeout = settings.job_timeout + ARQ_TIMEOUT_MARGIN_S
    tries = arq_max_tries(policy)
    functions = [
        func(cast(Any, command_job), name=name, timeout=arq_timeout, max_tries=tries) for name in sorted(COMMAND_JOBS)
    ]
    functions.append(func(cast(Any, apply_commands_job), name=BULK_JOB, timeout=arq_timeout, max_tries=tries))
    functions.append(func(cast(Any, reject_job), name=REJECT_JOB, timeout=arq_timeout, max_tries=tries))
    decoder = Decoder(settings.max_payload_bytes, settings.max_bulk_payload_bytes)
    values: dict[str, Any] = {
        "functions": functions,
        "queue_name": settings.queue,
        "redis_settings": arq_redis_settings(settings.redis_url),
        "job_serializer": dumps,
        "job_deserializer": decoder,
        "max_jobs": settings.max_jobs,
        "job_timeout": arq_timeout,
        "poll_delay": settings.poll_delay,
        "keep_result": 0,  # outcomes live in PostgreSQL; nothing is left in Redis per job
        "max_tries": tries,
        "job_completion_wait": int(settings.shutdown_grace),
        "health_check_interval": 60,
        "log_results": False,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
    }
    values.update(overrides)
    return values


def build_worker(settings: Settings, **overrides: Any) -> TasklineWorker:
    values = worker_settings(settings, **overrides)
    # arq sleeps poll_delay between polls; taskline's worker instead waits up to that long for
    # a wake-up from the enqueue script, so arq's own sleep is zero (see TasklineWorker).
    idle_wait = values["poll_delay"]
    values["poll_delay"] = 0
    worker = TasklineWorker(**values)
    worker.idle_wait_s = 0 if values.get("burst") else float(idle_wait)
    worker.bulk_concurrency = settings.bulk_concurrency
    worker.ctx.setdefault("worker", worker)  # the heartbeat reports its job counts
    return worker


def __getattr__(name: str) -> Any:
    """`WorkerSettings`, built from the environment when arq's CLI asks for it (not at import)."""
    if name == "WorkerSettings":
        return worker_settings(load_settings())
    raise AttributeError(name)


def run_worker() -> None:
    """Run a worker until SIGTERM/SIGINT, reconnecting to Redis with backoff if it goes away."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    _event_loop_run(supervise(settings))


def _event_loop_run(main: Any) -> None:
    """uvloop where it is installed (a third less CPU per job in bench/), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(main)
    else:
        uvloop.run(main)


async def supervise(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Run arq's loop; when Redis goes away, abandon the running jobs (their claims expire and
    another try applies them once) and start again with backoff, until a signal stops it.

    The process's Health (worker id, liveness pulse) and Metrics outlive the reconnects, and so
    does the HTTP server for /metrics, /healthz and /readyz on TASKLINE_METRICS_PORT (if set)."""
    from worker.ops.http_server import process_ops

    health = Health(interval=settings.heartbeat_interval)
    metrics = Metrics()
    async with process_ops(health, metrics, settings.metrics_port, get_logger("taskline.worker")):
        await _run_workers(settings, stopping or asyncio.Event(), {"health": health, "metrics": metrics})


async def _run_workers(settings: Settings, stopping: asyncio.Event, shared: dict[str, Any]) -> None:
    abandoned: list[str] = []

    async def release_abandoned() -> None:
        abandoned[:] = await _release_claims(settings, abandoned) if abandoned else []

    def note_abandoned(worker: TasklineWorker) -> None:
        abandoned.extend(job_id for job_id, task in worker.tasks.items() if not task.done())

    await run_until_stopped(
        build=lambda: build_worker(settings, handle_signals=False, ctx={"settings": settings, **shared}),
        request_stop=_request_stop,
        close=_close,
        stopping=stopping,
        log=get_logger("taskline.worker"),
        before_start=release_abandoned,
        on_lost=note_abandoned,
    )


def _request_stop(worker: TasklineWorker, stopping: asyncio.Event, sig: signal.Signals) -> None:
    if stopping.is_set():
        return
    stopping.set()
    health: Health | None = worker.ctx.get("health")
    if health is not None:
        health.stopping = True  # not ready from now on; the heartbeat says so
    get_logger("taskline.worker").info(
        "stopping: finishing running jobs",
        signal=sig.name,
        grace_s=worker._job_completion_wait,
        running=sum(not task.done() for task in worker.tasks.values()),
    )
    worker.handle_sig_wait_for_completion(sig)


async def _release_claims(settings: Settings, job_ids: list[str]) -> list[str]:
    """Drop the in-progress keys of jobs this process abandoned when Redis went away, so they
    run again now rather than when their claims expire (their transactions rolled back, or
    committed and will be recognised as duplicates). Returns the ids still to release."""
    from redis.asyncio import Redis

    client = Redis.from_url(settings.redis_url, socket_timeout=2)
    try:
        await client.delete(*(IN_PROGRESS_KEY_PREFIX + job_id for job_id in job_ids))
        return []
    except (OSError, RedisConnectionError, RedisTimeoutError):
        return job_ids  # Redis is still away: try again on the next reconnect (or let them expire)
    finally:
        await client.aclose()


async def _close(worker: TasklineWorker) -> None:
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if worker.on_shutdown and worker.ctx.get("runtime") is not None:
        await worker.on_shutdown(worker.ctx)
        worker.ctx.pop("runtime", None)
    if worker._pool is not None:
        with contextlib.suppress(Exception):
            await worker.pool.close(close_connection_pool=True)
        worker._pool = None
