"""`taskline trace ID`: the story of a command or a task, for people (or `--json`)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from worker.cli.layout import Column, fill, table_lines, width
from worker.config.settings import Settings

__all__ = ["render_trace", "run_trace", "trace"]


def _when(value: str | None) -> str:
    return "-" if not value else value[:23].replace("T", " ")


def render_trace(story: dict[str, Any], line_width: int) -> list[str]:
    """The story as lines of at most `line_width` columns; nothing in it is cut short."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.extend(fill(text, line_width, "  "))

    if story["kind"] == "command":
        say(f"command {story['id']}: {', '.join(story['states'])}")
        for row in story.get("outbox") or []:
            line = f"outbox: row {row['row_id']} added {_when(row['added_at'])}"
            if row["published_at"]:
                line += f", published {_when(row['published_at'])} ({row['publications']} times)"
            if row["confirmed_at"]:
                line += f", confirmed {row['outcome']} {_when(row['confirmed_at'])}"
            if row["invalid_reason"]:
                line += f", refused: {row['invalid_reason']}"
            say(line)
        job = story.get("job")
        if job:
            say(f"job: {job.get('function')} {json.dumps(job.get('command'))}")
        if "claim" in story:
            claim = story["claim"]
            say(f"claim: held by {claim['worker_id'] or 'a worker'}, expires in {claim['expires_in_s']:.1f}s")
        if "queue" in story:
            queue = story["queue"]
            line = f"queue: runs at {_when(queue['runs_at'])} (in {queue['runs_in_s']:.1f}s)"
            line += f", tries so far {queue['tries_so_far']}"
            say(line + (f"; {queue['why']}" if queue.get("why") else ""))
        if "applied" in story:
            applied = story["applied"]
            say(
                f"applied: {_when(applied['applied_at'])} by {applied['worker_id'] or 'an unrecorded worker'};"
                f" {applied['function']} of task {applied['task_id']}, issued {_when(applied['issued_at'])};"
                f" duplicates since: {applied['duplicates']}; {_signed(applied['signed_by'])}"
            )
            transaction = applied.get("transaction")
            if transaction:
                say(f"transaction {transaction['id']}: {transaction['commands']} command(s) committed together")
                for other in transaction["others"]:
                    lines.extend(
                        fill(
                            f"with {other['command_id']} {other['function']} task {other['task_id']}",
                            line_width,
                            "      ",
                            "    ",
                        )
                    )
        if "dead_letter" in story:
            dead = story["dead_letter"]
            say(
                f"dead letter: {_when(dead['failed_at'])}, {dead['category']} after {dead['attempts']} tries"
                f" ({_signed(dead['signed_by'])}): {dead['reason']}"
            )
        if story.get("outcome"):
            say(f"outcome for the producer: {json.dumps(story['outcome'])}")
        if story.get("note"):
            say(story["note"])
        return lines
    task = story["task"]
    say(f"task {story['id']}")
    if task is None:
        say("no row: never created, or purged")
    else:
        state = f"completed {_when(task['completed_at'])}" if task["completed"] else "open"
        say(f"user {task['user_id']}, {state}: title {task['title']!r}, {_description(task['description'])}")
    rows = [
        [
            _when(command["issued_at"]),
            command["function"],
            ", ".join(command["won"]) or "-",
            str(command["duplicates"]),
            f"{command['command_id']} applied {_when(command['applied_at'])} by {command['worker_id'] or '-'}"
            + (f", signed by key {command['signed_by']}" if command["signed_by"] else ""),
        ]
        for command in story["commands"]
    ]
    if rows:
        lines += table_lines(_COMMAND_COLUMNS, rows, line_width)
        say("won: the fields this command set last (last-writer-wins by issued_at, command_id)")
    for dead in story["dead_letters"]:
        say(f"dead letter {dead['job_id']} ({dead['function']}, {_when(dead['failed_at'])}): {dead['reason']}")
    return lines


_COMMAND_COLUMNS = [
    Column("issued at"),
    Column("function"),
    Column("won"),
    Column("dups", right=True),
    Column("command", long=True, narrowest=len("00000000-0000-0000-0000-000000000000")),  # a whole id
]
_CANDIDATES_SHOWN = 10


def _description(value: str | None) -> str:
    """The description as a person says it: quoted, or 'no description' when it is null."""
    return "no description" if value is None else f"description {value!r}"


async def run_trace(settings: Settings, ident: str) -> dict[str, Any] | list[str] | None:
    """The story of `ident`, else (when it is the start of ids) the ids it starts, else None."""
    from worker.config.redis_connection import make_tool_redis
    from worker.store.engine import make_tool_engine
    from worker.tools.trace import ids_starting_with
    from worker.tools.trace import trace as find_story

    redis = make_tool_redis(settings.redis_url)
    engine = make_tool_engine(settings, "taskline-trace", command_timeout=30)
    outbox_settings = settings.model_copy(update={"database_url": settings.outbox_url})
    outbox_engine = make_tool_engine(outbox_settings, "taskline-trace", command_timeout=30)
    try:
        async with engine.connect() as conn, outbox_engine.connect() as outbox:
            story = await find_story(conn, redis, settings.queue, ident, outbox)
            if story is not None or not ident.strip():
                return story
            matches = await ids_starting_with(conn, redis, settings.queue, ident.strip(), limit=_CANDIDATES_SHOWN + 1)
            if len(matches) == 1:
                return await find_story(conn, redis, settings.queue, matches[0], outbox)
            return matches or None
    finally:
        await redis.aclose()
        await engine.dispose()
        await outbox_engine.dispose()


def trace(
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="A command id (= its job id) or a task id, whole or a unique prefix.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The story of a command (queued, running, retrying, applied, dead-lettered) or of a task."""
    from worker.cli.errors import fail, load_cli_settings

    story = asyncio.run(run_trace(load_cli_settings(), ident))
    if story is None:
        fail(
            f"nothing knows {ident!r}: no job in Redis, no processed command, no dead letter, no task",
            "It was never sent under this id, or it is older than TASKLINE_PROCESSED_RETENTION;"
            " check the id (a whole id or the start of one).",
        )
    if isinstance(story, list):
        shown = ", ".join(story[:_CANDIDATES_SHOWN]) + (", …" if len(story) > _CANDIDATES_SHOWN else "")
        fail(f"{ident!r} is the start of several ids: {shown}", "Give more of the id.", code=2)
    if as_json:
        print(json.dumps(story))
    else:
        print("\n".join(render_trace(story, width())))


def _signed(key_id: str | None) -> str:
    """Which key signed the job, in words."""
    return f"signed by key {key_id}" if key_id else "unsigned"
