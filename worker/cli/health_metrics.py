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

from worker.cli.layout import Column, fill, table_lines, width
from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings
from worker.observe.service_errors import describe

__all__ = ["health", "metrics"]

err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, soft_wrap=True)


def _load() -> Settings:
    from worker.cli.errors import load_cli_settings

    return load_cli_settings()


async def _fetch_workers(
    settings: Settings, queue: str
) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any] | None]:
    """The live workers' heartbeats, the claims waiting of those that stopped beating, and the
    pause of the command queue (None: claiming)."""
    from worker.tools.claims import stranded_claims
    from worker.tools.fleet import read_heartbeats
    from worker.tools.pause import read_pause

    redis = make_tool_redis(settings.redis_url)
    try:
        heartbeats = await read_heartbeats(redis, queue)
        claims = await stranded_claims(redis, queue, heartbeats)
        return heartbeats.live, claims, await read_pause(redis, settings.queue)
    finally:
        await redis.aclose()


def describe_claims(claims: list[Any]) -> str:
    """One line on the claims waiting to expire (`StrandedClaim`s), for people."""
    workers = sorted({claim.worker_id for claim in claims})
    return (
        f"{len(claims)} job(s) claimed by {len(workers)} worker(s) that stopped beating ({', '.join(workers)})"
        f" wait to run again: the first within {min(c.runs_again_in_s for c in claims):.1f}s,"
        f" the last within {max(c.runs_again_in_s for c in claims):.1f}s (a dead worker's claims are taken"
        " over at the next claim; a silent one's when it is judged dead, or when they expire)"
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
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Check this worker (host:pid:random, or the start of it).")
    ] = None,
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
        workers, claims, pause = asyncio.run(_fetch_workers(settings, queue))
    except Exception as exc:
        if not as_json:  # the shared two lines (worker/cli/errors.py); a probe's JSON says it below
            raise
        _report(as_json, queue, False, f"cannot read heartbeats: {describe(exc)}", [])
        raise typer.Exit(1) from None
    if worker_id:
        selected = _matching_worker(workers, worker_id)
        scope = f"{kind} {selected[0].get('worker_id') if selected else worker_id}"
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
    table = all_workers or bool(worker_id) or not ok
    _report(as_json, queue, ok, message, summaries, table=table, claims=claims, pause=pause)
    if not ok:
        raise typer.Exit(1)


def _matching_worker(workers: list[dict[str, Any]], given: str) -> list[dict[str, Any]]:
    """The live worker whose id is `given`, or the one it is the start of; several: exit 2 listing them."""
    exact = [w for w in workers if w.get("worker_id") == given]
    if exact:
        return exact
    starting = [w for w in workers if str(w.get("worker_id")).startswith(given)]
    if len(starting) > 1:
        from worker.cli.errors import fail

        ids = ", ".join(sorted(str(w.get("worker_id")) for w in starting))
        fail(f"{given!r} is the start of several live workers' ids: {ids}", "Give more of the id.", code=2)
    return starting


def _report(
    as_json: bool,
    queue: str,
    ok: bool,
    message: str,
    workers: list[dict[str, Any]],
    table: bool = True,
    claims: list[Any] | None = None,
    pause: dict[str, Any] | None = None,
) -> None:
    claims = claims or []
    if as_json:
        report = {
            "ok": ok,
            "queue": queue,
            "message": message,
            "workers": workers,
            "claims_waiting_to_expire": [claim.as_dict() for claim in claims],
            "claiming_paused": pause is not None,
            "pause": pause,
        }
        print(json.dumps(report))
        return
    if workers and table:
        rows = []
        for w in workers:
            state = "stopping" if w.get("stopping") else ("ready" if w.get("ready") else "database down")
            rows.append(
                [
                    str(w.get("worker_id")),
                    str(w.get("started_at", "?"))[:19].replace("T", " "),
                    _age(w),
                    _number(w.get("jobs_running")),
                    _number(w.get("jobs_done")),
                    _number(w.get("jobs_failed")),
                    _number(w.get("jobs_retried")),
                    state,
                ]
            )
        print("\n".join(table_lines(_WORKER_COLUMNS, rows, width())))
    stream = sys.stdout if ok else sys.stderr
    lines = [("ok: " if ok else "unhealthy: ") + message]
    if claims:
        lines.append("waiting: " + describe_claims(claims))
    if pause is not None:
        lines.append("paused: " + describe_pause(pause))
    for line in lines:
        print("\n".join(fill(line, width(), "  ")), file=stream)


_WORKER_COLUMNS = [
    Column("worker"),
    Column("started"),
    *(Column(h, right=True) for h in ("beat", "running", "done", "failed", "retried")),
    Column("state", long=True),
]


def describe_pause(pause: dict[str, Any]) -> str:
    """One line on a pause of claiming, for people."""
    return (
        f"claiming is paused for the queue (by {pause.get('by', '?')} at {str(pause.get('at') or '?')[:19]}):"
        " workers are up and claim nothing until it is resumed"
    )


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
            from worker.cli.errors import fail, service_problem_exit
            from worker.observe.service_errors import explain

            problem = explain(exc)
            if problem is not None:
                service_problem_exit(problem)
            fail(f"cannot read the fleet: {describe(exc)}", "Check REDIS_URL and DATABASE_URL, and the workers' logs.")
        print(page.decode(), end="")
        if database_problem:  # the page is printed all the same, without taskline_dead_letters
            err.print(f"error: dead letters not counted: {database_problem}", markup=False, highlight=False)
            raise typer.Exit(1)
        return
    asyncio.run(serve_fleet(settings, serve, host, token, log=err))
