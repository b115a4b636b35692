"""`taskline status`: the fleet at a glance, once, refreshing in place (`--watch`), or as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from taskline_producer.cli_errors import ServiceProblem

from worker.cli.fairness import describe_fairness
from worker.cli.layout import Column, fill, table_lines, width
from worker.config.settings import Settings

__all__ = ["render_status", "status"]


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def render_status(data: dict[str, Any], line_width: int) -> list[str]:
    """The status as lines of at most `line_width` columns (see worker/cli/layout.py)."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.extend(fill(text, line_width, "  "))

    depth = data["depth"]
    waiting_turn = f" {depth['in_fair_lanes']} waiting their turn (fair lanes)," if depth.get("in_fair_lanes") else ""
    say(
        f"queue {data['queue']}: {depth['ready']} ready, {depth['deferred']} deferred or retrying,"
        f" {depth['in_progress']} in progress,{waiting_turn}"
        f" {depth['claims_waiting_to_expire']} claims waiting to expire"
    )
    pause = data.get("pause")
    if pause is not None:
        say(
            f"claiming paused (by {pause.get('by', '?')} at {str(pause.get('at') or '?')[:19]}):"
            " workers are up and claim nothing until it is resumed"
        )
    fairness = data.get("fairness")
    if fairness and (fairness["keys_waiting"] or fairness["held_count"]):
        described = describe_fairness(fairness)
        say(described[0])
        for line in described[1:]:
            if not line.lstrip().startswith("limit:"):
                lines.extend(fill(line.strip(), line_width, "    ", "  "))
    for claim in data["claims_waiting_to_expire"][:10]:
        lines.extend(
            fill(
                f"waiting: job {claim['job_id']} claimed by {claim['worker_id']}"
                f" ({claim['worker_state']}, silent {claim['silent_for_s']:.0f}s),"
                f" runs again within {claim['runs_again_in_s']:.1f}s",
                line_width,
                "    ",
                "  ",
            )
        )
    lines.append("")
    rates = []
    for name, label in (("last_minute", "last minute"), ("last_hour", "last hour")):
        window = data["rates"][name]
        latency = window["latency_s"]
        rates.append(
            [
                label,
                _n(window["commands_per_s"], 2),
                _n(window["applied"]),
                _n(window["duplicates"]),
                _n(window["dead_lettered"]),
                _n(window["retried"]),
                _seconds(latency["p50"]),
                _seconds(latency["p95"]),
                _seconds(latency["p99"]),
            ]
        )
    lines += table_lines(_RATE_COLUMNS, rates, line_width)
    say("dups: duplicates; dead: dead-lettered; p50/p95/p99: latency from issued_at to commit")
    lines.append("")
    workers = []
    for role, rows in (("worker", data["workers"]), ("scheduler", data["schedulers"])):
        for w in rows:
            workers.append(
                [
                    str(w["worker_id"]) + ("" if role == "worker" else " (scheduler)"),
                    str(w["version"] or "-"),
                    _n(w["jobs_running"]),
                    _n(w["jobs_done"]),
                    _n(w["jobs_failed"]),
                    f"{w['last_beat_age_s']:.1f}s ago" if w["last_beat_age_s"] is not None else "-",
                    str(w["state"]),
                ]
            )
    for w in data["stopped_workers"]:
        workers.append([str(w["worker_id"]), "", "", "", "", f"{w['silent_for_s']:.0f}s ago", "stopped beating"])
    if workers:
        lines += table_lines(_WORKER_COLUMNS, workers, line_width)
    if not data["workers"]:
        say("no live worker: start one with `taskline worker`")
    lines.append("")
    purge = data.get("last_purge")
    if purge:
        finished = "complete" if purge.get("complete") else "stopped at its time budget"
        when = str(purge.get("now", "?"))[:19].replace("T", " ")
        say(f"last purge: {when} UTC, {purge.get('total', 0)} rows in {purge.get('seconds', 0)}s ({finished})")
    elif data["schedulers"]:
        say("last purge: none since the scheduler started")
    else:
        say("scheduler: none running (`taskline scheduler` runs the purge)")
    lines += _outbox_lines(data.get("outbox"), line_width)
    letters = data.get("dead_letters")
    if letters is None:
        pass
    elif "error" in letters:
        say(f"dead letters: {letters['error']}")
    else:
        lines.append("")
        say(f"dead letters: {letters['total']} in all; the last {letters['since']} by function and kind")
        groups = [
            [
                group["function"],
                group["category"],
                str(group["count"]),
                group["last_at"][:19].replace("T", " "),
                group["latest_reason"],
            ]
            for group in letters["groups"]
        ]
        if groups:
            lines += table_lines(_DEAD_LETTER_COLUMNS, groups, line_width)
    return lines


_RATE_COLUMNS = [
    Column("commands"),
    *(Column(h, right=True) for h in ("cmd/s", "applied", "dups", "dead", "retried", "p50", "p95", "p99")),
]
_WORKER_COLUMNS = [
    Column("worker"),
    Column("version"),
    *(Column(h, right=True) for h in ("running", "done", "failed", "last beat")),
    Column("state", long=True),
]
_DEAD_LETTER_COLUMNS = [
    Column("function"),
    Column("kind"),
    Column("count", right=True),
    Column("last"),
    Column("latest reason", long=True),
]
_RELAY_COLUMNS = [
    Column("relay"),
    *(Column(h, right=True) for h in ("published", "again", "confirmed", "invalid", "last beat")),
]


def _outbox_lines(outbox: dict[str, Any] | None, line_width: int) -> list[str]:
    """The outbox's figures and its relays (nothing when no relay runs)."""
    if not outbox:
        return []
    lines = [""]
    figures = outbox.get("figures")
    if figures:
        lines += fill(
            f"outbox: {figures['unpublished']} to publish (oldest {_seconds(figures['oldest_unpublished_s'])}),"
            f" {figures['unconfirmed']} waiting for an outcome"
            f" (oldest {_seconds(figures['oldest_unconfirmed_s'])}), {figures['invalid']} invalid",
            line_width,
            "  ",
        )
    relays = [
        [
            str(r["relay_id"]),
            _n(r["published"]),
            _n(r["republished"]),
            _n(r["confirmed"]),
            _n(r["invalid"]),
            f"{r['last_beat_age_s']:.1f}s ago" if r["last_beat_age_s"] is not None else "-",
        ]
        for r in outbox["relays"]
    ]
    if relays:
        lines += table_lines(_RELAY_COLUMNS, relays, line_width)
        lines += fill("again: published again after Redis lost them", line_width, "  ")
    return lines


async def _collect(settings: Settings, redis: Any, engine: Any) -> tuple[dict[str, Any], ServiceProblem | None]:
    """The status, and the problem of a PostgreSQL that could not be read (the rest is shown all
    the same; `taskline status` then exits 1)."""
    from worker.observe.service_errors import explain
    from worker.tools.status import collect_status, read_dead_letters

    data = await collect_status(
        redis, None, settings.queue, sample_every_s=settings.history_sample_s, keep_s=settings.history_keep
    )
    try:
        data["dead_letters"] = await read_dead_letters(engine)
    except Exception as exc:
        problem = explain(exc) or _timeout_problem(exc, settings)
        if problem is None:
            raise
        data["dead_letters"] = {"error": f"{problem.message()}. {problem.hint}"}
        return data, problem
    return data, None


def _timeout_problem(exc: Exception, settings: Settings) -> ServiceProblem | None:
    """A database that did not answer in time is a service problem too."""
    if not isinstance(exc, TimeoutError):
        return None
    hint = "Is PostgreSQL running and answering? Check DATABASE_URL and the server's load."
    return ServiceProblem("PostgreSQL", "DATABASE_URL", settings.database_url, "no answer within 5 s", hint)


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data), flush=True)
    else:
        print("\n".join(render_status(data, width())).rstrip("\n"), flush=True)


async def _run(settings: Settings, watch: bool, every: float, as_json: bool, last: list[ServiceProblem | None]) -> None:
    """Collect and show the status, once or every `every` seconds; `last` holds the problem of the
    latest reading (None: every service answered)."""
    from worker.config.redis_connection import make_tool_redis
    from worker.store.engine import make_tool_engine

    redis = make_tool_redis(settings.redis_url)
    engine = make_tool_engine(settings, "taskline-status")
    # Ctrl-C ends --watch between readings: a cancellation landing inside a Redis or database call
    # could be absorbed by the client library and leave the loop running.
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    try:
        if not watch or as_json or not sys.stdout.isatty():  # into a pipe: one reading after another
            while True:
                started = time.monotonic()
                data, last[0] = await _collect(settings, redis, engine)
                _show(data, as_json)
                if not watch:
                    return
                if not as_json:
                    print(flush=True)
                if await _stopped(stop, every - (time.monotonic() - started)):
                    return
        from rich.live import Live

        screen = Console(highlight=False)
        with Live(console=screen, auto_refresh=False, screen=False) as live:
            while True:
                started = time.monotonic()
                data, last[0] = await _collect(settings, redis, engine)
                text = "\n".join(render_status(data, width())).rstrip("\n")
                live.update(Text(text, no_wrap=True), refresh=True)
                if await _stopped(stop, every - (time.monotonic() - started)):
                    return
    finally:
        await redis.aclose()
        await engine.dispose()


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait up to `wait_s` for Ctrl-C; whether it came (before or during the wait)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, wait_s))
    return stop.is_set()


def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")] = False,
    every: Annotated[float, typer.Option("--every", min=0.2, help="Seconds between refreshes with --watch.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (one per refresh with --watch).")] = False,
) -> None:
    """Queue depth, claims waiting to expire, rates and latency, workers, the last purge, dead letters.
    Exits 1 when PostgreSQL or Redis cannot be read (what could be read is printed first; with
    --watch, when the last reading could not)."""
    from worker.cli.errors import load_cli_settings, service_problem_exit

    settings = load_cli_settings()
    last: list[ServiceProblem | None] = [None]
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --watch; the exit code is the last reading's
        asyncio.run(_run(settings, watch, every, as_json, last))
    if last[0] is not None:
        service_problem_exit(last[0])
