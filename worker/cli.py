"""`taskline`: run a worker, migrate, send commands, inspect and replay dead letters."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from taskline_producer import cli as send_cli
from taskline_producer.contract import command_json_schema

from worker.ops import cli as ops_cli
from worker.settings import SettingsError, load_settings

__all__ = ["app", "main", "parse_age"]

app = typer.Typer(
    name="taskline",
    help="taskline: task commands from Redis, applied exactly once to PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(send_cli.app, name="send", help="Publish commands (same as taskline-send).")
dead_letters_app = typer.Typer(help="List, show, replay and discard dead letters.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
out = Console()
err = Console(stderr=True)

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '15m', '0s' → timedelta."""
    match = _AGE.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not an age; use a number and a unit: 30d, 12h, 15m, 90s")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _settings() -> Any:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def worker() -> None:
    """Run a worker (the Procfile's worker process). Stops cleanly on SIGTERM."""
    from worker.arq_seam.wiring import run_worker

    try:
        run_worker()
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def scheduler() -> None:
    """Run the scheduler (the Procfile's scheduler process): the purge every
    TASKLINE_PURGE_EVERY_MINUTES, once per tick however many schedulers run."""
    from worker.purge.scheduler import run_scheduler

    try:
        run_scheduler()
    except SettingsError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def purge(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Delete tasks completed longer ago than this (30d, 12h, 0s)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    batch: Annotated[int | None, typer.Option("--batch", min=1, help="Rows per transaction.")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", min=1, help="Stop after this many seconds (default: until done).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Delete completed tasks past TASKLINE_PURGE_RETENTION (or --older-than), processed commands
    past TASKLINE_PROCESSED_RETENTION and dead letters past TASKLINE_DEAD_LETTER_RETENTION."""
    from worker.purge.cli import run_purge_cli

    age = parse_age(older_than) if older_than is not None else None
    run_purge_cli(
        _settings(),
        older_than=age,
        dry_run=dry_run,
        batch=batch,
        time_budget=time_budget,
        as_json=as_json,
        out=out,
        err=err,
    )


@app.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Bring the database schema up to date (alembic upgrade head); safe to run again."""
    from worker.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    out.print(f"database migrated to {revision}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the commands (also in docs/commands.schema.json)."""
    out.print_json(data=command_json_schema())


def _filter(
    function: str | None,
    reason: str | None,
    older_than: str | None,
    newer_than: str | None,
    job_ids: list[str] | None = None,
) -> Any:
    from worker.pipeline.dead_letters import DeadLetterFilter

    now = datetime.now(UTC)
    return DeadLetterFilter(
        function=function,
        reason_contains=reason,
        older_than=now - parse_age(older_than) if older_than else None,
        newer_than=now - parse_age(newer_than) if newer_than else None,
        job_ids=job_ids or None,
    )


FunctionOpt = Annotated[str | None, typer.Option("--function", help="Only this job function.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Only reasons containing this text.")]
OlderOpt = Annotated[str | None, typer.Option("--older-than", help="Only dead letters older than this (e.g. 1h).")]
NewerOpt = Annotated[str | None, typer.Option("--newer-than", help="Only dead letters newer than this (e.g. 1d).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")]


def _as_dict(letter: Any, with_payload: bool = False) -> dict[str, Any]:
    data = {
        "job_id": letter.job_id,
        "function": letter.function,
        "reason": letter.reason,
        "category": letter.category,
        "attempts": letter.attempts,
        "payload_size": letter.payload_size,
        "queue": letter.queue,
        "failed_at": letter.failed_at.isoformat(),
    }
    if with_payload:
        data["payload"] = letter.payload.decode("utf-8", "replace") if letter.payload is not None else None
    return data


async def _with_session(work: Any) -> Any:
    from worker.store.engine import make_engine, make_sessions

    engine = make_engine(_settings())
    try:
        async with make_sessions(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


@dead_letters_app.command("list")
def list_dead_letters(
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first."""
    from worker.pipeline.dead_letters import find_dead_letters

    where = _filter(function, reason, older_than, newer_than)
    letters = asyncio.run(_with_session(lambda s: find_dead_letters(s, where, limit=limit)))
    if as_json:
        for letter in letters:
            print(json.dumps(_as_dict(letter)))
        return
    table = Table("job_id", "function", "failed_at", "tries", "reason")
    for letter in letters:
        table.add_row(
            letter.job_id,
            letter.function or "-",
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(letter.attempts),
            letter.reason,
        )
    out.print(table)
    out.print(f"{len(letters)} dead letter(s)")


@dead_letters_app.command("show")
def show_dead_letter(job_id: str, as_json: JsonOpt = False) -> None:
    """Show one dead letter with its payload."""
    from worker.pipeline.dead_letters import find_dead_letters

    letters = asyncio.run(_with_session(lambda s: find_dead_letters(s, _filter(None, None, None, None, [job_id]))))
    if not letters:
        err.print(f"no dead letter with job id {job_id!r}")
        raise typer.Exit(1)
    data = _as_dict(letters[0], with_payload=True)
    if as_json:
        print(json.dumps(data))
    else:
        for key, value in data.items():
            out.print(f"[bold]{key}[/bold]: {value}", markup=True, highlight=False)


@dead_letters_app.command("replay")
def replay(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids; or use the filters.")] = None,
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-enqueue dead letters' original payloads under the same job id, then remove them."""
    from worker.ops.replay import replay_dead_letters

    where = _filter(function, reason, older_than, newer_than, job_ids)
    settings = _settings()
    report = asyncio.run(replay_dead_letters(settings, where))
    if as_json:
        print(json.dumps(report))
    else:
        out.print(f"replayed {len(report['replayed'])}, skipped {len(report['skipped'])}")
        for job_id, why in report["skipped"].items():
            out.print(f"  skipped {job_id}: {why}", markup=False)


@dead_letters_app.command("discard")
def discard(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids; or use the filters.")] = None,
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete dead letters for good."""
    from worker.pipeline.dead_letters import delete_dead_letters, find_dead_letters

    where = _filter(function, reason, older_than, newer_than, job_ids)
    if not job_ids and not any((function, reason, older_than, newer_than)) and not yes:
        typer.confirm("Discard ALL dead letters?", abort=True)

    async def work(session: Any) -> int:
        letters = await find_dead_letters(session, where)
        return await delete_dead_letters(session, [letter.job_id for letter in letters])

    count = asyncio.run(_with_session(work))
    print(json.dumps({"discarded": count}) if as_json else f"discarded {count}")


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Demo users to create.")] = 2,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the worker.")] = 30.0,
) -> None:
    """Send a small demo stream (with a duplicate and an invalid command) and show what the worker did."""
    from worker.ops.demo import run_demo

    asyncio.run(run_demo(_settings(), users=users, wait_s=wait, console=out))


# `taskline health` (exit 0/1 for probes) and `taskline metrics` (the fleet's Prometheus page)
app.command("health")(ops_cli.health)
app.command("metrics")(ops_cli.metrics)


def main() -> None:
    app(args=send_cli.expand_bare_wait(sys.argv[1:]))  # `taskline send … --wait` with no number
