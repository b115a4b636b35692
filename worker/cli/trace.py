"""`taskline trace ID`: the story of a command or a task, for people (or `--json`)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from worker.config.settings import Settings

__all__ = ["render_trace", "run_trace", "trace"]

out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def _when(value: str | None) -> str:
    return "-" if not value else value[:23].replace("T", " ")


def render_trace(story: dict[str, Any]) -> Group:
    parts: list[Any] = []
    if story["kind"] == "command":
        parts.append(Text.assemble(("command ", "bold"), story["id"], ": ", (", ".join(story["states"]), "bold")))
        for row in story.get("outbox") or []:
            line = f"outbox: row {row['row_id']} added {_when(row['added_at'])}"
            if row["published_at"]:
                line += f", published {_when(row['published_at'])} ({row['publications']} times)"
            if row["confirmed_at"]:
                line += f", confirmed {row['outcome']} {_when(row['confirmed_at'])}"
            if row["invalid_reason"]:
                line += f", refused: {row['invalid_reason'][:300]}"
            parts.append(Text(line, style="red" if row["invalid_reason"] else ""))
        job = story.get("job")
        if job:
            parts.append(Text(f"job: {job.get('function')} {json.dumps(job.get('command'))[:300]}"))
        if "claim" in story:
            claim = story["claim"]
            parts.append(
                Text(f"claim: held by {claim['worker_id'] or 'a worker'}, expires in {claim['expires_in_s']:.1f}s")
            )
        if "queue" in story:
            queue = story["queue"]
            line = f"queue: runs at {_when(queue['runs_at'])} (in {queue['runs_in_s']:.1f}s)"
            line += f", tries so far {queue['tries_so_far']}"
            parts.append(Text(line + (f"; {queue['why']}" if queue.get("why") else "")))
        if "applied" in story:
            applied = story["applied"]
            parts.append(
                Text(
                    f"applied: {_when(applied['applied_at'])} by {applied['worker_id'] or 'an unrecorded worker'};"
                    f" {applied['function']} of task {applied['task_id']}, issued {_when(applied['issued_at'])};"
                    f" duplicates since: {applied['duplicates']}"
                )
            )
            transaction = applied.get("transaction")
            if transaction:
                parts.append(
                    Text(f"transaction {transaction['id']}: {transaction['commands']} command(s) committed together")
                )
                for other in transaction["others"]:
                    parts.append(Text(f"  with {other['command_id']} {other['function']} task {other['task_id']}"))
        if "dead_letter" in story:
            dead = story["dead_letter"]
            parts.append(
                Text(
                    f"dead letter: {_when(dead['failed_at'])}, {dead['category']} after {dead['attempts']} tries:"
                    f" {dead['reason']}",
                    style="red",
                )
            )
        if story.get("outcome"):
            parts.append(Text(f"outcome for the producer: {json.dumps(story['outcome'])[:300]}"))
        if story.get("note"):
            parts.append(Text(story["note"]))
        return Group(*parts)
    task = story["task"]
    parts.append(Text.assemble(("task ", "bold"), story["id"]))
    if task is None:
        parts.append(Text("no row: never created, or purged"))
    else:
        state = f"completed {_when(task['completed_at'])}" if task["completed"] else "open"
        parts.append(
            Text(f"user {task['user_id']}, {state}: title {task['title']!r}, description {task['description']!r}")
        )
    table = Table("issued at", "command", "function", "applied at", "worker", "won", "dups")
    for command in story["commands"]:
        table.add_row(
            _when(command["issued_at"]),
            command["command_id"],
            command["function"],
            _when(command["applied_at"]),
            command["worker_id"] or "-",
            ", ".join(command["won"]) or "-",
            str(command["duplicates"]),
        )
    table.caption = "won: the fields this command set last (last-writer-wins by issued_at, command_id)"
    parts.append(table)
    for dead in story["dead_letters"]:
        parts.append(
            Text(
                f"dead letter {dead['job_id']} ({dead['function']}, {_when(dead['failed_at'])}): {dead['reason']}",
                style="red",
            )
        )
    return Group(*parts)


async def run_trace(settings: Settings, ident: str) -> dict[str, Any] | None:
    from worker.config.redis_connection import make_tool_redis
    from worker.store.engine import make_tool_engine
    from worker.tools.trace import trace as find_story

    redis = make_tool_redis(settings.redis_url)
    engine = make_tool_engine(settings, "taskline-trace", command_timeout=30)
    outbox_settings = settings.model_copy(update={"database_url": settings.outbox_url})
    outbox_engine = make_tool_engine(outbox_settings, "taskline-trace", command_timeout=30)
    try:
        async with engine.connect() as conn, outbox_engine.connect() as outbox:
            return await find_story(conn, redis, settings.queue, ident, outbox)
    finally:
        await redis.aclose()
        await engine.dispose()
        await outbox_engine.dispose()


def trace(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A command id (= its job id) or a task id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The story of a command (queued, running, retrying, applied, dead-lettered) or of a task."""
    from worker.cli.errors import load_cli_settings

    settings = load_cli_settings()
    try:
        story = asyncio.run(run_trace(settings, ident))
    except Exception as exc:
        from worker.observe.service_errors import describe

        err.print(f"cannot tell the story: {describe(exc)}", markup=False)
        raise typer.Exit(1) from None
    if story is None:
        err.print(
            f"nothing knows {ident!r}: no job in Redis, no processed command, no dead letter, no task. It was never"
            " sent under this id, or it is older than TASKLINE_PROCESSED_RETENTION.",
            markup=False,
        )
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(story))
    else:
        out.print(render_trace(story))
