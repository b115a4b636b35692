"""`taskline health` and `taskline metrics`: the fleet's health and numbers, read from Redis.

Both read the heartbeat keys the workers write (worker/observe/heartbeat.py), so they work where the
platform cannot reach a worker process (Heroku routes HTTP only to `web` dynos) and from an exec
probe inside a container.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings
from worker.observe.service_errors import describe

__all__ = ["health", "metrics"]

# Not a terminal (a probe, a pipe, a log): no wrapping at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, soft_wrap=True)


def _load() -> Settings:
    from worker.cli.errors import load_cli_settings

    return load_cli_settings()


async def _fetch_workers(settings: Settings, queue: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The live workers' heartbeats, and the claims waiting to expire of those that stopped beating."""
    from worker.tools.claims import stranded_claims
    from worker.tools.fleet import read_heartbeats

    redis = make_tool_redis(settings.redis_url)
    try:
        heartbeats = await read_heartbeats(redis, queue)
        return heartbeats.live, await stranded_claims(redis, heartbeats.gone)
    finally:
        await redis.aclose()


def describe_claims(claims: list[Any]) -> str:
    """One line on the claims waiting to expire (`StrandedClaim`s), for people."""
    workers = sorted({claim.worker_id for claim in claims})
    return (
        f"{len(claims)} job(s) claimed by {len(workers)} worker(s) that stopped beating ({', '.join(workers)})"
        f" wait for their claims to expire: the first in {min(c.expires_in_s for c in claims):.1f}s,"
        f" the last in {max(c.expires_in_s for c in claims):.1f}s; then any worker runs them again"
    )


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
    from taskline_producer.keys import scheduler_queue

    from worker.observe.health import this_host
    from worker.tools.fleet import summary

    settings = _load()
    queue = scheduler_queue(settings.queue) if scheduler else settings.queue
    kind = "scheduler" if scheduler else "worker"
    try:
        workers, claims = asyncio.run(_fetch_workers(settings, queue))
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
    _report(as_json, queue, ok, message, summaries, table=all_workers or bool(worker_id) or not ok, claims=claims)
    if not ok:
        raise typer.Exit(1)


def _report(
    as_json: bool,
    queue: str,
    ok: bool,
    message: str,
    workers: list[dict[str, Any]],
    table: bool = True,
    claims: list[Any] | None = None,
) -> None:
    claims = claims or []
    if as_json:
        waiting = [claim.as_dict() for claim in claims]
        print(
            json.dumps(
                {"ok": ok, "queue": queue, "message": message, "workers": workers, "claims_waiting_to_expire": waiting}
            )
        )
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
    if claims:
        (out if ok else err).print("waiting: " + describe_claims(claims), markup=False, highlight=False)


def metrics(
    serve: Annotated[int | None, typer.Option("--serve", help="Serve the page over HTTP on this port.")] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="TASKLINE_METRICS_HOST",
            help="Interface to listen on with --serve; 0.0.0.0 for every interface (Heroku, Kubernetes).",
        ),
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TASKLINE_METRICS_TOKEN", help="With --serve: require this bearer token."),
    ] = None,
) -> None:
    """All live workers' (and schedulers') metrics, the queue depth and the dead letters as one
    Prometheus page.

    Printed once on stdout, or served at /metrics with --serve PORT (e.g. a Heroku
    `web: taskline metrics --serve $PORT --host 0.0.0.0` process), read at most once a second
    however often it is scraped. Exits 1 when the dead letters could not be counted (the page
    is printed all the same)."""
    from worker.tools.fleet_metrics import read_once, serve_fleet

    settings = _load()
    if serve is None:
        try:
            page, database_problem = asyncio.run(read_once(settings))
        except Exception as exc:
            err.print(f"error: cannot read the fleet: {describe(exc)}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        print(page.decode(), end="")
        if database_problem:  # the page is printed all the same, without taskline_dead_letters
            err.print(f"error: dead letters not counted: {database_problem}", markup=False, highlight=False)
            raise typer.Exit(1)
        return
    asyncio.run(serve_fleet(settings, serve, host, token, log=err))
