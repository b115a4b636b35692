"""`taskline fairness show|limit|clear`: the fair turns' limits and what they hold back.

Limits are kept in Redis (`<queue>:fair:limits`), not in the environment: every claim of every
worker reads them, so a change here applies fleet-wide at the next claim, with no restart
(worker/arq_seam/fair_turns.py says why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from worker.cli.errors import fail
from worker.config.redis_connection import make_tool_redis
from worker.tools.fair_limits import (
    DEFAULT_LIMIT_KEY,
    FairLimit,
    FairnessView,
    HeldKey,
    clear_limit,
    read_fairness,
    set_limit,
)

__all__ = ["app", "describe_fairness"]

app = typer.Typer(help="Fair turns between users: limits, weights, and who is held back.", no_args_is_help=True)
out = Console()
T = TypeVar("T")

KeyArg = Annotated[
    str,
    typer.Argument(metavar="KEY", help="A fairness key (user:42, tenant:acme), or '*' for every key without its own."),
]


def _with_redis(work: Callable[[Any, str], Awaitable[T]]) -> T:
    from worker.cli.errors import load_cli_settings

    settings = load_cli_settings()

    async def main() -> T:
        redis = make_tool_redis(settings.redis_url)
        try:
            return await work(redis, settings.queue)
        finally:
            await redis.aclose()

    return asyncio.run(main())


@app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False) -> None:
    """The limits set, the keys held back by their rate limit, and the largest lanes waiting their turn."""
    view = _with_redis(read_fairness)
    if as_json:
        out.print_json(data=view.as_dict())
        return
    for line in describe_fairness(view):
        out.print(line, markup=False, highlight=False)


@app.command("limit")
def limit(
    key: KeyArg,
    rate: Annotated[float, typer.Option("--rate", help="Commands per second, on average (0: no rate limit).")] = 0.0,
    burst: Annotated[float, typer.Option("--burst", help="Commands at once after a quiet spell (>= 1).")] = 1.0,
    weight: Annotated[float, typer.Option("--weight", help="Share of turns against other keys (2: twice).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """Set a key's rate limit and weight; every worker applies it at its next claim."""
    try:
        chosen = FairLimit(rate=rate, burst=burst, weight=weight)
        _with_redis(lambda redis, queue: set_limit(redis, queue, key, chosen))
    except ValueError as exc:
        fail(f"{exc}; nothing was changed", "taskline fairness limit --help shows what each option takes", code=2)
    if as_json:
        out.print_json(data={"key": key, "rate": chosen.rate, "burst": chosen.burst, "weight": chosen.weight})
    else:
        out.print(f"{key}: {chosen.describe()} (from the next claim on)", markup=False, highlight=False)


@app.command("clear")
def clear(key: KeyArg, as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False) -> None:
    """Remove a key's own limit: it falls back on the '*' limit, or none."""
    had = _with_redis(lambda redis, queue: clear_limit(redis, queue, key))
    if not had:
        fail(f"{key} has no limit of its own; nothing was changed", "taskline fairness show lists the limits set")
    if as_json:
        out.print_json(data={"key": key, "removed": True})
    else:
        out.print(f"{key}: limit removed", markup=False, highlight=False)


def describe_fairness(view: FairnessView | dict[str, Any], now_ms: int | None = None) -> list[str]:
    """Lines for people: who is held back by a limit, and by how much; the largest lanes
    (from a FairnessView or its as_dict(), as `taskline status --json` carries it)."""
    if isinstance(view, dict):
        view = FairnessView(
            keys_waiting=view["keys_waiting"],
            held=[HeldKey(h["key"], h["waiting"], h["until_ms"]) for h in view["held"]],
            largest=[HeldKey(**h) for h in view["largest"]],
            jobs_waiting=view["jobs_waiting"],
            held_count=view["held_count"],
            limits={k: (FairLimit(**v) if v else None) for k, v in view["limits"].items()},
        )
    now_ms = now_ms if now_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    lines = [f"fair turns: {view.keys_waiting} key(s) waiting their turn, {view.held_count} held by a rate limit"]
    for held in view.held:
        wait_s = max(held.until_ms - now_ms, 0) / 1000
        lines.append(f"  held: {held.key}: {held.waiting} job(s) waiting, next in {wait_s:.1f}s")
    if view.held_count > len(view.held):
        lines.append(f"  held: … and {view.held_count - len(view.held)} more")
    for lane in view.largest:
        lines.append(f"  waiting: {lane.key}: {lane.waiting} job(s)")
    for key, chosen in view.limits.items():
        shown = chosen.describe() if chosen else "not a limit (fix it: taskline fairness limit KEY ...)"
        label = "every other key" if key == DEFAULT_LIMIT_KEY else key
        lines.append(f"  limit: {label}: {shown}")
    return lines
