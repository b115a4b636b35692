"""`taskline`: run a worker, migrate, send commands, inspect and replay dead letters."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from taskline_producer import cli as send_cli
from taskline_producer.cli_errors import run_cli
from taskline_producer.contract import command_json_schema

from worker.cli import dead_letters as dead_letter_cli
from worker.cli import fairness as fairness_cli
from worker.cli import health_metrics
from worker.cli.arguments import parse_age
from worker.cli.errors import fail, load_cli_settings, settings_errors_exit
from worker.observe.service_errors import explain

__all__ = ["app", "main"]

app = typer.Typer(
    name="taskline",
    help=(
        "taskline: task commands from Redis, applied exactly once to PostgreSQL."
        " Add --debug anywhere for a full traceback when PostgreSQL or Redis cannot be used."
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.callback()(send_cli.version_option)
app.add_typer(send_cli.app, name="send", help="Publish commands (same as taskline-send).")
app.add_typer(dead_letter_cli.app, name="dead-letters")
app.add_typer(fairness_cli.app, name="fairness")
out = Console()
err = Console(stderr=True)


@app.command()
def worker() -> None:
    """Run a worker (the Procfile's worker process). Stops cleanly on SIGTERM."""
    from worker.arq_seam.wiring import run_worker

    with settings_errors_exit():
        run_worker()


@app.command()
def scheduler() -> None:
    """Run the scheduler (the Procfile's scheduler process): the purge every
    TASKLINE_PURGE_EVERY_MINUTES, once per tick however many schedulers run."""
    from worker.arq_seam.scheduler import run_scheduler

    with settings_errors_exit():
        run_scheduler()


@app.command()
def relay() -> None:
    """Run the outbox relay (the Procfile's relay process): publish the commands services committed
    to taskline_outbox (TASKLINE_OUTBOX_DATABASE_URL, else DATABASE_URL), confirm each by its
    outcome, publish again what Redis lost. Stops cleanly on SIGTERM. docs/outbox.md."""
    from worker.relay.process import run_relay

    with settings_errors_exit():
        run_relay()


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
    from worker.cli.purge import run_purge_cli

    age = parse_age(older_than) if older_than is not None else None
    run_purge_cli(
        load_cli_settings(),
        older_than=age,
        dry_run=dry_run,
        batch=batch,
        time_budget=time_budget,
        as_json=as_json,
        out=out,
        err=err,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Bring the database schema up to date (alembic upgrade head); safe to run again."""
    from worker.store.migrate import upgrade

    settings = load_cli_settings()
    upgrade(settings.database_url, revision)
    if as_json:
        print(json.dumps({"migrated_to": revision}))
    else:
        out.print(f"database migrated to {revision}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the commands (also in docs/commands.schema.json)."""
    out.print_json(data=command_json_schema())


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Demo users to create.")] = 2,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the worker.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print what came of it as one JSON object.")] = False,
) -> None:
    """Send a small demo stream (with a duplicate and an invalid command) and show what the worker did."""
    from worker.cli.demo import NoWorker, run_demo

    console = Console(quiet=True) if as_json else out
    try:
        result = asyncio.run(run_demo(load_cli_settings(), users=users, wait_s=wait, console=console))
    except NoWorker as exc:
        fail(str(exc))  # it says what to start
    if as_json:
        print(json.dumps(result.as_dict()))
    if not result.complete:
        fail(
            "the worker has not applied everything yet: is it stuck or stopped?",
            "See `taskline health --all` and the worker's log.",
        )


# `taskline health` (exit 0/1 for probes) and `taskline metrics` (the fleet's Prometheus page)
app.command("health")(health_metrics.health)
app.command("metrics")(health_metrics.metrics)


@app.command()
def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")] = False,
    every: Annotated[float, typer.Option("--every", min=0.2, help="Seconds between refreshes with --watch.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (one per refresh with --watch).")] = False,
) -> None:
    """Queue depth, claims waiting to expire, rates and latency, workers, the last purge, dead letters.
    Exits 1 when PostgreSQL or Redis cannot be read (what could be read is printed first)."""
    from worker.cli.status import status as run_status

    run_status(watch=watch, every=every, as_json=as_json)


@app.command()
def web(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface (default TASKLINE_WEB_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default TASKLINE_WEB_PORT, else PORT, else 8000).")
    ] = None,
) -> None:
    """Serve the fleet's page (the Procfile's web process): overview with plots, workers, queue,
    dead letters, trace. Read-only unless TASKLINE_WEB_PASSWORD is set; on a host other than
    loopback it needs the password, or TASKLINE_WEB_ALLOW_OPEN=1."""
    from worker.web.server import run_web

    settings = load_cli_settings()
    with settings_errors_exit():
        run_web(settings, host=host, port=port)


@app.command("trace")
def trace_command(
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="A command id (= its job id) or a task id, whole or a unique prefix.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The story of a command (queued, running, retrying, applied, dead-lettered) or of a task."""
    from worker.cli.trace import trace

    trace(ident, as_json=as_json)


def main() -> None:
    sys.argv[1:] = send_cli.expand_bare_wait(sys.argv[1:])  # `taskline send … --wait` with no number
    run_cli(app, explain)
