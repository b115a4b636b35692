"""`taskline health` and `taskline metrics`: the fleet's health and numbers, read from Redis.

Both read the heartbeat keys the workers write (worker/ops/health.py), so they work where the
platform cannot reach a worker process (Heroku routes HTTP only to `web` dynos) and from an exec
probe inside a container.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from worker.cli_errors import describe
from worker.settings import Settings, SettingsError, load_settings

__all__ = ["health", "metrics"]

# Not a terminal (a probe, a pipe, a log): no wrapping at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, soft_wrap=True)
_REDIS_TIMEOUT_S = 5.0


def _load() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _redis(settings: Settings) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(settings.redis_url, socket_connect_timeout=_REDIS_TIMEOUT_S, socket_timeout=_REDIS_TIMEOUT_S)


async def _fetch_workers(settings: Settings, queue: str) -> list[dict[str, Any]]:
    from worker.ops.fleet import live_workers

    redis = _redis(settings)
    try:
        return await live_workers(redis, queue)
    finally:
        await redis.aclose()


def _age(document: dict[str, Any]) -> str:
    try:
        beat = datetime.fromisoformat(str(document["last_beat"]))
    except (KeyError, ValueError):
        return "?"
    return f"{max(0.0, (datetime.now(UTC) - beat).total_seconds()):.1f}s"


def _number(value: Any) -> str:
    return "-" if value is None else str(value)


def health(
    ready: Annotated[
        bool, typer.Option("--ready", help="Also require readiness: database reachable, not stopping.")
    ] = False,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="Check this worker (host:pid:random).")] = None,
    all_workers: Annotated[bool, typer.Option("--all", help="Every live worker of the queue, on any host.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a table.")] = False,
    scheduler: Annotated[
        bool, typer.Option("--scheduler", help="Check `taskline scheduler` processes instead of workers.")
    ] = False,
) -> None:
    """Exit 0 if the worker(s) beat recently (their heartbeat keys in Redis are fresh), else 1.

    Without --worker-id or --all: the workers on this host (a container's exec probe)."""
    from worker.ops.fleet import summary
    from worker.ops.health import scheduler_queue_name, this_host

    settings = _load()
    queue = scheduler_queue_name(settings.queue) if scheduler else settings.queue
    kind = "scheduler" if scheduler else "worker"
    try:
        workers = asyncio.run(_fetch_workers(settings, queue))
    except Exception as exc:
        message = f"cannot read heartbeats: {describe(exc)}"
        _report(as_json, queue, False, message, [])
        raise typer.Exit(1) from None
    if worker_id:
        scope = f"{kind} {worker_id}"
        selected = [w for w in workers if w.get("worker_id") == worker_id]
    elif all_workers:
        scope = f"queue {settings.queue}"
        selected = workers
    else:
        host = this_host()
        scope = f"host {host}"
        selected = [w for w in workers if w.get("host") == host]
    summaries = [summary(w) for w in selected]
    if not summaries:
        ok = False
        message = (
            f"no live {kind} for {scope} on queue {settings.queue}: no fresh heartbeat key"
            f" taskline:worker:{queue}:… (stopped, crashed, or cannot reach Redis)"
        )
    elif ready and not all(s["ready"] for s in summaries):
        ok = False
        bad = [
            f"{s['worker_id']} ({'stopping' if s.get('stopping') else s.get('db_error') or 'database down'})"
            for s in summaries
            if not s["ready"]
        ]
        message = f"not ready: {', '.join(bad)}"
    else:
        ok = True
        state = "ready" if ready else "live"
        message = f"{len(summaries)} {state} {kind}(s) for {scope}"
    _report(as_json, queue, ok, message, summaries, table=all_workers or bool(worker_id) or not ok)
    if not ok:
        raise typer.Exit(1)


def _report(
    as_json: bool, queue: str, ok: bool, message: str, workers: list[dict[str, Any]], table: bool = True
) -> None:
    if as_json:
        print(json.dumps({"ok": ok, "queue": queue, "message": message, "workers": workers}))
        return
    if workers and table:
        grid = Table("worker", "pid", "started", "last beat", "running", "done", "failed", "retried", "state")
        for w in workers:
            state = "stopping" if w.get("stopping") else ("ready" if w.get("ready") else "database down")
            grid.add_row(
                str(w.get("worker_id")),
                _number(w.get("pid")),
                str(w.get("started_at", "?"))[:19].replace("T", " "),
                _age(w),
                _number(w.get("jobs_running")),
                _number(w.get("jobs_done")),
                _number(w.get("jobs_failed")),
                _number(w.get("jobs_retried")),
                state,
            )
        out.print(grid)
    (out if ok else err).print(("ok: " if ok else "unhealthy: ") + message, markup=False, highlight=False)


class _FleetReader:
    """Reads the fleet's numbers: heartbeats and queue depth from Redis, dead letters from the database."""

    def __init__(self, settings: Settings) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.settings = settings
        self.database_problem: str | None = None
        """Why the last page has no dead-letter count (the database could not be used), if so."""
        self.redis = _redis(settings)
        self.engine = create_async_engine(
            settings.database_url,
            pool_size=1,
            max_overflow=0,
            hide_parameters=True,
            connect_args={"server_settings": {"application_name": "taskline-metrics"}, "timeout": _REDIS_TIMEOUT_S},
        )

    async def page(self) -> bytes:
        from worker.ops.fleet import live_workers, render_fleet_metrics
        from worker.ops.health import count_dead_letters, queue_depth, scheduler_queue_name

        queue = self.settings.queue
        workers = await live_workers(self.redis, queue)
        schedulers = await live_workers(self.redis, scheduler_queue_name(queue))
        depth = await queue_depth(self.redis, queue)
        dead_letters: int | None
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT_S), self.engine.connect() as conn:
                dead_letters = await count_dead_letters(conn)
        except Exception as exc:
            self.database_problem = describe(exc)
            dead_letters = None
        else:
            self.database_problem = None
        return render_fleet_metrics(queue, workers, depth, dead_letters, schedulers=schedulers)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def metrics(
    serve: Annotated[int | None, typer.Option("--serve", help="Serve the page over HTTP on this port.")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on with --serve.")] = "0.0.0.0",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TASKLINE_METRICS_TOKEN", help="With --serve: require this bearer token."),
    ] = None,
) -> None:
    """All live workers' (and schedulers') metrics, the queue depth and the dead letters as one
    Prometheus page.

    Printed once on stdout, or served at /metrics with --serve PORT (e.g. a Heroku
    `web: taskline metrics --serve $PORT` process)."""
    settings = _load()
    if serve is None:
        try:
            page, database_problem = asyncio.run(_once(settings))
        except Exception as exc:
            err.print(f"error: cannot read the fleet: {describe(exc)}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        print(page.decode(), end="")
        if database_problem:  # the page is printed all the same, without taskline_dead_letters
            err.print(f"error: dead letters not counted: {database_problem}", markup=False, highlight=False)
            raise typer.Exit(1)
        return
    asyncio.run(_serve(settings, serve, host, token))


async def _once(settings: Settings) -> tuple[bytes, str | None]:
    reader = _FleetReader(settings)
    try:
        return await reader.page(), reader.database_problem
    finally:
        await reader.close()


async def _serve(settings: Settings, port: int, host: str, token: str | None) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST

    from worker.ops.http_server import Response, json_response
    from worker.ops.http_server import serve as serve_http

    reader = _FleetReader(settings)

    async def handle(path: str) -> Response:
        if path in ("/metrics", "/"):
            try:
                return Response(200, await reader.page(), CONTENT_TYPE_LATEST)
            except Exception as exc:
                return json_response(503, {"error": f"cannot read the fleet from Redis: {type(exc).__name__}"})
        if path in ("/healthz", "/livez", "/readyz"):
            return json_response(200, {"status": "alive"})
        return json_response(404, {"error": "not found", "paths": ["/metrics", "/healthz"]})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await serve_http(handle, port, host=host or None, token=token)
    err.print(f"serving the fleet's metrics on http://{host}:{port}/metrics (queue {settings.queue})", markup=False)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await reader.close()
