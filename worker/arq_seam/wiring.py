"""Wiring: the arq worker that runs taskline's jobs, and its startup and shutdown.

`worker_settings()` returns the arq Worker options for taskline's settings (arq's public
options only); `build_worker()` makes the worker from them; `run_worker()` is what
`taskline worker` runs: it keeps the process up across Redis outages, which stock arq does not.
arq's own CLI cannot start this worker (it always builds a stock arq Worker), so
`arq worker.arq_seam.wiring.WorkerSettings` refuses and says what to run instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, cast

from arq import func
from redis.exceptions import RedisError
from sqlalchemy import text
from taskline_producer import keys
from taskline_producer.contract import BULK_JOB, COMMAND_JOBS, dumps

from worker.arq_seam.overrides import SeamOptions, TasklineWorker
from worker.arq_seam.supervisor import connector_for, run_until_stopped
from worker.config.pooler import pooler_hint
from worker.config.redis_connection import arq_redis_settings, make_redis
from worker.config.retention import ARQ_TIMEOUT_MARGIN_S
from worker.config.settings import Settings, load_settings, redact_url
from worker.config.tracing_env import traces_exporter
from worker.logs import configure_logging, get_logger
from worker.observe.health import Health
from worker.observe.metrics import Metrics
from worker.observe.monitor import Monitor
from worker.observe.outages import OutageLog
from worker.observe.tracing_setup import process_tracing, trace_id_processors
from worker.pipeline.decode import REJECT_JOB, Decoder
from worker.pipeline.failures import Kind, RetryPolicy
from worker.pipeline.group_commit import GroupCommitter
from worker.pipeline.jobs import apply_commands_job, command_job, reject_job
from worker.pipeline.runtime import Runtime
from worker.pipeline.signatures import Verifier
from worker.store.engine import make_engine, make_sessions

__all__ = ["TasklineWorker", "build_worker", "run_worker", "supervise", "worker_settings"]


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
    # Health: process-wide when supervise() made it (it outlives reconnects), else this worker's.
    health: Health = ctx.setdefault("health", Health(interval=settings.heartbeat_interval))
    committer = GroupCommitter(
        sessions,
        max_batch=settings.batch_max,
        flushers=settings.commit_concurrency,
        worker_id=health.worker_id,
        hold_s=min(settings.wait_for_create, settings.job_timeout / 2),
        tracer=ctx.get("tracing"),  # None unless the OTEL_* environment turned tracing on
    )
    ctx["runtime"] = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        committer=committer,
        worker_id=health.worker_id,
        policy=retry_policy(settings),
        metrics=ctx.get("metrics") or Metrics(),
        redis=ctx["redis"],
        log=log,
        log_each_command=settings.log_level == "DEBUG",
        database=OutageLog(
            log, service="PostgreSQL", setting="DATABASE_URL", url=settings.database_url, advice=DATABASE_ADVICE
        ),
    )
    await _check_database(ctx["runtime"])
    monitor = Monitor(
        queue=settings.queue,
        health=health,
        metrics=ctx["runtime"].metrics,
        redis=ctx["redis"],
        engine=engine,
        log=log,
        worker=ctx.get("worker"),
        contract_version=settings.contract_version,
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


DATABASE_ADVICE = (
    "check that PostgreSQL runs, that DATABASE_URL points at it (host, port, user, password, database),"
    " and that its max_connections has room for this worker's pool"
)


async def _check_database(runtime: Runtime) -> None:
    """At start-up, say at once (and only once) when PostgreSQL cannot be reached; the worker
    starts anyway and its jobs wait, retried, until the database answers."""
    try:
        async with asyncio.timeout(5), runtime.engine.connect() as conn:
            reached_port = (await conn.execute(text("SELECT inet_server_port()"))).scalar()
    except Exception as exc:
        if runtime.database is not None:
            runtime.database.down(exc, what="commands wait and are retried; ")
    else:
        runtime.database_answered()
        settings = runtime.settings
        hint = pooler_hint(settings.database_url, settings.database_pooler, reached_port)
        if hint is not None:
            runtime.log.warning("a connection pooler may stand between the worker and PostgreSQL", advice=hint)


def worker_settings(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """arq Worker keyword arguments for these settings: only arq's public options."""
    policy = retry_policy(settings)
    arq_timeout = settings.job_timeout + ARQ_TIMEOUT_MARGIN_S
    tries = arq_max_tries(policy)
    functions = [
        func(cast(Any, command_job), name=name, timeout=arq_timeout, max_tries=tries) for name in sorted(COMMAND_JOBS)
    ]
    functions.append(func(cast(Any, apply_commands_job), name=BULK_JOB, timeout=arq_timeout, max_tries=tries))
    functions.append(func(cast(Any, reject_job), name=REJECT_JOB, timeout=arq_timeout, max_tries=tries))
    verifier = Verifier(settings.signing_keys, required=settings.require_signatures)
    decoder = Decoder(settings.max_payload_bytes, settings.max_bulk_payload_bytes, verifier)
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
        "health_check_interval": 3600,  # arq's shared health key; taskline's heartbeats replace it
        "log_results": False,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
    }
    values.update(overrides)
    return values


def build_worker(settings: Settings, **overrides: Any) -> TasklineWorker:
    values = worker_settings(settings, **overrides)
    # arq sleeps poll_delay after every poll; taskline's worker instead waits up to that long for
    # a wake-up token (TasklineWorker.heart_beat), so arq's own sleep is zero.
    idle_wait = 0.0 if values.get("burst") else float(values["poll_delay"])
    values["poll_delay"] = 0
    # arq's read of the queue only needs to say whether a job is due: the claim script reads the
    # due jobs itself (up to five times the slots, arq's own default), without sending ids twice.
    values["queue_read_limit"] = 1
    seam = SeamOptions(
        idle_wait_s=idle_wait,
        bulk_concurrency=settings.bulk_concurrency,
        scan_limit=max(values["max_jobs"] * 5, 100),
        fair_in_flight=settings.fair_in_flight,
        max_job_bytes=max(settings.max_payload_bytes, settings.max_bulk_payload_bytes),
    )
    worker = TasklineWorker(**values, seam=seam)
    worker.ctx.setdefault("worker", worker)  # the heartbeat reports its job counts
    return worker


ARQ_CLI_REFUSAL = (
    "taskline's worker is started with `taskline worker` (the Procfile's worker process), not with"
    " arq's CLI: arq's CLI always builds a stock arq Worker, which would run taskline's jobs without"
    " its claim script, dead letters for jobs arq gives up on, bulk limit and reconnects."
)


def __getattr__(name: str) -> Any:
    """`arq worker.arq_seam.wiring.WorkerSettings` is refused, saying what to run instead."""
    if name == "WorkerSettings":
        raise SystemExit(ARQ_CLI_REFUSAL)
    raise AttributeError(name)


def run_worker() -> None:
    """Run a worker until SIGTERM/SIGINT, reconnecting to Redis with backoff if it goes away."""
    settings = load_settings()
    exporter = traces_exporter(os.environ)
    configure_logging(settings.log_format, settings.log_level, extra_processors=trace_id_processors(exporter))
    _event_loop_run(supervise(settings, trace_exporter=exporter))


def _event_loop_run(main: Any) -> None:
    """uvloop where it is installed (a third less CPU per job in bench/), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(main)
    else:
        uvloop.run(main)


async def supervise(
    settings: Settings, stopping: asyncio.Event | None = None, *, trace_exporter: str | None = None
) -> None:
    """Run arq's loop; when Redis goes away, abandon the running jobs (their claims expire and
    another try applies them once) and start again with backoff, until a signal stops it.

    The process's Health (worker id, liveness pulse) and Metrics outlive the reconnects, and so
    does the HTTP server for /metrics, /healthz and /readyz on TASKLINE_METRICS_PORT (if set)."""
    from worker.observe.http_server import process_ops

    health = Health(interval=settings.heartbeat_interval)
    metrics = Metrics()
    log = get_logger("taskline.worker")
    tracing = process_tracing(  # None unless OTEL_* asks for it
        trace_exporter, queue=settings.queue, database_url=settings.database_url, worker_id=health.worker_id, log=log
    )
    shared: dict[str, Any] = {"health": health, "metrics": metrics}
    if tracing is not None:
        shared["tracing"] = tracing
    try:
        async with process_ops(health, metrics, settings.metrics_port, log, host=settings.metrics_host):
            await _run_workers(settings, stopping or asyncio.Event(), shared)
    finally:
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)  # exports the spans still buffered


async def _run_workers(settings: Settings, stopping: asyncio.Event, shared: dict[str, Any]) -> None:
    abandoned: list[str] = []
    values = worker_settings(settings)

    async def release_abandoned() -> None:
        abandoned[:] = await _release_claims(settings, abandoned) if abandoned else []

    def note_abandoned(worker: TasklineWorker) -> None:
        abandoned.extend(job_id for job_id, task in worker.tasks.items() if not task.done())

    await run_until_stopped(
        connect=connector_for(settings.redis_url, values),
        build=lambda pool: build_worker(
            settings, redis_pool=pool, handle_signals=False, ctx={"settings": settings, **shared}
        ),
        request_stop=_request_stop,
        close=_close,
        stopping=stopping,
        log=get_logger("taskline.worker"),
        redis_url=settings.redis_url,
        before_start=release_abandoned,
        on_lost=note_abandoned,
    )


def _request_stop(worker: TasklineWorker, stopping: asyncio.Event, sig: signal.Signals) -> None:
    if stopping.is_set():
        return
    stopping.set()
    settings: Settings = worker.ctx["settings"]
    health: Health | None = worker.ctx.get("health")
    if health is not None:
        health.stopping = True  # not ready from now on; the heartbeat says so
    get_logger("taskline.worker").info(
        "stopping: finishing running jobs",
        signal=sig.name,
        grace_s=settings.shutdown_grace,
        running=sum(not task.done() for task in worker.tasks.values()),
    )
    worker.handle_sig_wait_for_completion(sig)


async def _release_claims(settings: Settings, job_ids: list[str]) -> list[str]:
    """Drop the claims of jobs this process abandoned when Redis went away, so they run again
    now rather than when their claims expire (their transactions rolled back, or committed and
    will be recognised as duplicates). Returns the ids still to release."""
    client = make_redis(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.delete(*(keys.in_progress_key(job_id) for job_id in job_ids))
        return []
    except (RedisError, OSError):
        return job_ids  # Redis is still away: try again on the next reconnect (or let them expire)
    finally:
        await client.aclose()


async def _close(worker: TasklineWorker) -> None:
    """arq's `Worker.close` also deletes arq's health key and closes the pool; the supervisor owns
    the pool here, and after an outage neither would work. So: let the jobs end, then shut down."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    if worker.ctx.get("runtime") is not None:
        await shutdown(worker.ctx)
