"""`taskline status`: the fleet at a glance, once, refreshing in place (`--watch`), or as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from worker.cli.fairness import describe_fairness
from worker.config.settings import Settings

__all__ = ["render_status", "status"]

out = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=True)
err = Console(stderr=True)


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


def render_status(data: dict[str, Any]) -> Group:
    """The status as rich renderables (tables and lines)."""
    parts: list[Any] = []
    depth = data["depth"]
    parts.append(
        Text.assemble(
            ("queue ", "bold"),
            f"{data['queue']}: ",
            (f"{depth['ready']} ready", "bold"),
            f", {depth['deferred']} deferred or retrying, {depth['in_progress']} in progress, ",
            f"{depth['in_fair_lanes']} waiting their turn (fair lanes), " if depth.get("in_fair_lanes") else "",
            (
                f"{depth['claims_waiting_to_expire']} claims waiting to expire",
                "bold red" if depth["claims_waiting_to_expire"] else "",
            ),
        )
    )
    pause = data.get("pause")
    if pause is not None:
        parts.append(
            Text(
                f"claiming paused (by {pause.get('by', '?')} at {str(pause.get('at') or '?')[:19]}):"
                " workers are up and claim nothing until it is resumed",
                style="bold yellow",
            )
        )
    fairness = data.get("fairness")
    if fairness and (fairness["keys_waiting"] or fairness["held_count"]):
        lines = describe_fairness(fairness)
        parts.append(Text(lines[0], style="bold yellow" if fairness["held_count"] else ""))
        parts.extend(Text(line) for line in lines[1:] if not line.lstrip().startswith("limit:"))
    for claim in data["claims_waiting_to_expire"][:10]:
        parts.append(
            Text(
                f"  waiting: job {claim['job_id']} claimed by {claim['worker_id']}"
                f" ({claim['worker_state']}, silent {claim['silent_for_s']:.0f}s),"
                f" runs again within {claim['runs_again_in_s']:.1f}s",
                style="red",
            )
        )
    rates = Table("commands", "per second", "applied", "duplicates", "dead-lettered", "retried", "p50", "p95", "p99")
    for name, label in (("last_minute", "last minute"), ("last_hour", "last hour")):
        window = data["rates"][name]
        latency = window["latency_s"]
        rates.add_row(
            label,
            _n(window["commands_per_s"], 2),
            _n(window["applied"]),
            _n(window["duplicates"]),
            _n(window["dead_lettered"]),
            _n(window["retried"]),
            _seconds(latency["p50"]),
            _seconds(latency["p95"]),
            _seconds(latency["p99"]),
        )
    rates.caption = "latency: from issued_at to commit"
    parts.append(rates)
    workers = Table("worker", "host", "pid", "version", "running", "done", "failed", "last beat", "state")
    for role, rows in (("worker", data["workers"]), ("scheduler", data["schedulers"])):
        for w in rows:
            workers.add_row(
                str(w["worker_id"]) + ("" if role == "worker" else " (scheduler)"),
                str(w["host"]),
                _n(w["pid"]),
                str(w["version"] or "-"),
                _n(w["jobs_running"]),
                _n(w["jobs_done"]),
                _n(w["jobs_failed"]),
                f"{w['last_beat_age_s']:.1f}s ago" if w["last_beat_age_s"] is not None else "-",
                str(w["state"]),
            )
    for w in data["stopped_workers"]:
        workers.add_row(
            str(w["worker_id"]), str(w["host"]), "", "", "", "", "", f"{w['silent_for_s']:.0f}s ago", "stopped beating"
        )
    if not data["workers"]:
        workers.caption = "no live worker: start one with `taskline worker`"
    parts.append(workers)
    purge = data.get("last_purge")
    if purge:
        finished = "complete" if purge.get("complete") else "stopped at its time budget"
        when = str(purge.get("now", "?"))[:19].replace("T", " ")
        parts.append(
            Text(f"last purge: {when} UTC, {purge.get('total', 0)} rows in {purge.get('seconds', 0)}s ({finished})")
        )
    elif data["schedulers"]:
        parts.append(Text("last purge: none since the scheduler started"))
    else:
        parts.append(Text("scheduler: none running (`taskline scheduler` runs the purge)"))
    parts.extend(_outbox_parts(data.get("outbox")))
    letters = data.get("dead_letters")
    if letters is None:
        pass
    elif "error" in letters:
        parts.append(Text(f"dead letters: {letters['error']}", style="red"))
    else:
        table = Table("function", "kind", "count", "last", "latest reason")
        for group in letters["groups"]:
            table.add_row(
                group["function"],
                group["category"],
                str(group["count"]),
                group["last_at"][:19].replace("T", " "),
                group["latest_reason"][:70],
            )
        table.title = f"dead letters: {letters['total']} in all; the last {letters['since']} by function and kind"
        parts.append(table)
    return Group(*parts)


def _outbox_parts(outbox: dict[str, Any] | None) -> list[Any]:
    """The outbox's figures and its relays (nothing when no relay runs)."""
    if not outbox:
        return []
    parts: list[Any] = []
    figures = outbox.get("figures")
    if figures:
        parts.append(
            Text.assemble(
                ("outbox ", "bold"),
                f"{figures['unpublished']} to publish (oldest {_seconds(figures['oldest_unpublished_s'])}),",
                f" {figures['unconfirmed']} waiting for an outcome",
                f" (oldest {_seconds(figures['oldest_unconfirmed_s'])}), ",
                (f"{figures['invalid']} invalid", "bold red" if figures["invalid"] else ""),
            )
        )
    relays = Table("relay", "host", "pid", "published", "re-published", "confirmed", "invalid", "last beat")
    for r in outbox["relays"]:
        relays.add_row(
            str(r["relay_id"]),
            str(r["host"]),
            _n(r["pid"]),
            _n(r["published"]),
            _n(r["republished"]),
            _n(r["confirmed"]),
            _n(r["invalid"]),
            f"{r['last_beat_age_s']:.1f}s ago" if r["last_beat_age_s"] is not None else "-",
        )
    parts.append(relays)
    return parts


async def _collect(settings: Settings, redis: Any, engine: Any) -> dict[str, Any]:
    from worker.tools.status import collect_status

    return await collect_status(
        redis, engine, settings.queue, sample_every_s=settings.history_sample_s, keep_s=settings.history_keep
    )


async def _run(settings: Settings, watch: bool, every: float, as_json: bool) -> None:
    from worker.config.redis_connection import make_tool_redis
    from worker.store.engine import make_tool_engine

    redis = make_tool_redis(settings.redis_url)
    engine = make_tool_engine(settings, "taskline-status")
    try:
        if not watch:
            data = await _collect(settings, redis, engine)
            if as_json:
                print(json.dumps(data))
            else:
                out.print(render_status(data))
            return
        from rich.live import Live

        with Live(console=out, auto_refresh=False, screen=False) as live:
            while True:
                started = time.monotonic()
                data = await _collect(settings, redis, engine)
                if as_json:
                    print(json.dumps(data), flush=True)
                else:
                    live.update(render_status(data), refresh=True)
                await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))
    finally:
        await redis.aclose()
        await engine.dispose()


def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")] = False,
    every: Annotated[float, typer.Option("--every", min=0.2, help="Seconds between refreshes with --watch.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (one per refresh with --watch).")] = False,
) -> None:
    """Queue depth, claims waiting to expire, rates and latency, workers, the last purge, dead letters."""
    from worker.cli.errors import load_cli_settings

    settings = load_cli_settings()
    try:
        asyncio.run(_run(settings, watch, every, as_json))
    except KeyboardInterrupt:
        return
    except Exception as exc:
        from worker.observe.service_errors import describe

        err.print(f"cannot read the fleet: {describe(exc)}", markup=False)
        raise typer.Exit(1) from None
