"""`taskline-send` (also `taskline send`): publish commands from flags or from JSON lines.

Needs typer and rich: `pip install "taskline-producer[cli]"` (`taskline_producer.entry` says so
when they are missing). Exit codes: 0 sent (with `--wait`: applied, or a duplicate of a command
that had taken effect), 1 Redis unreachable, 2 invalid input, 3 refused as a duplicate job, 4
dead-lettered (`--wait`), 5 no final outcome within the wait (`--wait`). `stream --wait` exits
by the worst of its commands: 2 if a line was invalid, else 4 if one was dead-lettered, else 5 if
one had no outcome in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.console import Console

from taskline_producer.cli_errors import ServiceUnavailable, redis_problem, run_cli
from taskline_producer.cli_stream import follow_stream, print_stream_summary
from taskline_producer.client import TaskProducer
from taskline_producer.contract import DEFAULT_QUEUE, OUTCOME_TTL_MAX_S
from taskline_producer.outcomes import Outcome, OutcomeTimeout
from taskline_producer.receipts import Receipt
from taskline_producer.stream_send import StreamSummary, describe_invalid
from taskline_producer.version import __version__

__all__ = ["DEFAULT_WAIT_S", "EXIT_DEAD_LETTER", "EXIT_TIMEOUT", "app", "expand_bare_wait", "main", "version_option"]

DEFAULT_WAIT_S = 30.0
"""How long a bare `--wait` waits for the outcome."""
EXIT_DEAD_LETTER = 4
EXIT_TIMEOUT = 5

app = typer.Typer(
    name="taskline-send",
    help=(
        "Publish task commands onto a taskline queue in Redis."
        " Add --debug anywhere for a full traceback when Redis cannot be used."
    ),
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"taskline {__version__}")
        raise typer.Exit()


@app.callback()
def version_option(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version (one for the whole project)."
        ),
    ] = False,
) -> None:
    """Publish task commands onto a taskline queue in Redis."""


RedisUrl = Annotated[
    str,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        help="The queue's Redis: redis://, rediss:// (TLS), redis+sentinel://h1,h2/<master>/<db>.",
    ),
]
Queue = Annotated[str, typer.Option("--queue", envvar="TASKLINE_QUEUE", help="The arq queue name.")]
UserId = Annotated[int, typer.Option("--user-id", help="Owner of the task (a user.id).")]
TaskId = Annotated[UUID, typer.Option("--task-id", help="The task's UUID.")]
CommandId = Annotated[UUID | None, typer.Option("--command-id", help="Default: a new UUID.")]
Wait = Annotated[
    float | None,
    typer.Option(
        "--wait",
        min=0.001,
        help=f"Wait up to SECONDS (a bare --wait: {DEFAULT_WAIT_S:g}) for the outcome and print it;"
        f" exit {EXIT_DEAD_LETTER} on a dead letter, {EXIT_TIMEOUT} when none comes in time.",
        metavar="[SECONDS]",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="The result as one JSON line (default: indented JSON).")]
OutcomeTtl = Annotated[
    int,
    typer.Option(
        "--outcome-ttl",
        min=1,
        max=OUTCOME_TTL_MAX_S,
        help="With --wait: seconds the worker keeps the outcome in Redis.",
    ),
]

_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
_FOLLOW_UP = "`taskline trace {command_id}` tells its whole story; `taskline status` shows the workers."


def _print_result(receipt: Receipt, outcome: Outcome | OutcomeTimeout | None, one_line: bool) -> None:
    """One JSON document: the receipt, and with --wait the outcome (or the last state seen);
    indented, or on one line with --json."""
    status = "queued" if receipt.queued else "refused: duplicate command_id"
    data: dict[str, Any] = {"command_id": str(receipt.command_id), "task_id": str(receipt.task_id), "status": status}
    if isinstance(outcome, OutcomeTimeout):
        data["outcome"] = outcome.outcome.as_dict()
        data["timed_out_after_s"] = outcome.timeout
    elif outcome is not None:
        data["outcome"] = outcome.as_dict()
    if one_line:
        print(json.dumps(data))
    else:
        out.print_json(data=data)
    if not receipt.queued:
        raise typer.Exit(3)
    if isinstance(outcome, OutcomeTimeout):
        _error(str(outcome), _FOLLOW_UP.format(command_id=receipt.command_id))
        raise typer.Exit(EXIT_TIMEOUT)
    if outcome is not None and outcome.state == "dead_letter":
        _error(f"dead-lettered: {outcome.reason}", _FOLLOW_UP.format(command_id=receipt.command_id))
        raise typer.Exit(EXIT_DEAD_LETTER)


@asynccontextmanager
async def _connect(redis_url: str, queue: str) -> AsyncIterator[TaskProducer]:
    """The producer of every command; a Redis that cannot be used becomes a ServiceUnavailable
    naming the URL actually used (--redis-url or REDIS_URL)."""
    try:
        async with TaskProducer.connect(redis_url, queue=queue) as producer:
            yield producer
    except Exception as exc:
        problem = redis_problem(exc, redis_url, setting="REDIS_URL or --redis-url")
        if problem is None:
            raise
        raise ServiceUnavailable(problem) from exc


async def _one(
    redis_url: str, queue: str, action: str, fields: dict[str, Any], wait: float | None
) -> tuple[Receipt, Outcome | OutcomeTimeout | None]:
    async with _connect(redis_url, queue) as producer:
        method = getattr(producer, action)
        receipt: Receipt = await method(**fields)
        if wait is None or not receipt.queued:
            return receipt, None
        try:
            return receipt, await receipt.outcome(timeout=wait)
        except OutcomeTimeout as exc:
            return receipt, exc


def _run_one(
    redis_url: str,
    queue: str,
    action: str,
    fields: dict[str, Any],
    wait: float | None,
    outcome_ttl: int,
    as_json: bool,
) -> None:
    if wait is not None:
        fields = {**fields, "outcome_ttl": outcome_ttl}
    try:
        receipt, outcome = asyncio.run(_one(redis_url, queue, action, fields, wait))
    except ValidationError as exc:
        _error(f"invalid command: {describe_invalid(exc)}", "Fix the options it names (--help lists them).")
        raise typer.Exit(2) from None
    _print_result(receipt, outcome, as_json)


@app.command()
def create(
    user_id: UserId,
    title: Annotated[str, typer.Option("--title", help="1–200 characters.")],
    description: Annotated[str | None, typer.Option("--description", help="0–1000 characters.")] = None,
    task_id: Annotated[UUID | None, typer.Option("--task-id", help="Default: a new UUID.")] = None,
    command_id: CommandId = None,
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    wait: Wait = None,
    outcome_ttl: OutcomeTtl = 3600,
    as_json: AsJson = False,
) -> None:
    """Send one create_task."""
    fields = {
        "user_id": user_id,
        "title": title,
        "description": description,
        "task_id": task_id,
        "command_id": command_id,
    }
    _run_one(redis_url, queue, "create_task", fields, wait, outcome_ttl, as_json)


@app.command()
def update(
    task_id: TaskId,
    user_id: UserId,
    title: Annotated[str | None, typer.Option("--title")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    clear_description: Annotated[bool, typer.Option("--clear-description", help="Set description to null.")] = False,
    command_id: CommandId = None,
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    wait: Wait = None,
    outcome_ttl: OutcomeTtl = 3600,
    as_json: AsJson = False,
) -> None:
    """Send one update_task (give --title and/or --description or --clear-description)."""
    fields: dict[str, Any] = {"task_id": task_id, "user_id": user_id, "command_id": command_id}
    if title is not None:
        fields["title"] = title
    if clear_description:
        fields["description"] = None
    elif description is not None:
        fields["description"] = description
    _run_one(redis_url, queue, "update_task", fields, wait, outcome_ttl, as_json)


@app.command()
def complete(
    task_id: TaskId,
    user_id: UserId,
    command_id: CommandId = None,
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    wait: Wait = None,
    outcome_ttl: OutcomeTtl = 3600,
    as_json: AsJson = False,
) -> None:
    """Send one complete_task."""
    fields = {"task_id": task_id, "user_id": user_id, "command_id": command_id}
    _run_one(redis_url, queue, "complete_task", fields, wait, outcome_ttl, as_json)


@app.command()
def stream(
    source: Annotated[str, typer.Argument(help="A file of JSON lines, or - for standard input.")] = "-",
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    batch: Annotated[int, typer.Option(min=1, help="Commands pipelined per round trip.")] = 1000,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            min=0.001,
            help=f"Then wait up to SECONDS in all (a bare --wait: {DEFAULT_WAIT_S:g}) for every command's outcome"
            f" and print a summary; exit {EXIT_DEAD_LETTER} if any was dead-lettered, {EXIT_TIMEOUT} if any had"
            " none in time.",
            metavar="[SECONDS]",
        ),
    ] = None,
    outcome_ttl: OutcomeTtl = 3600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Send a stream of JSON lines, each {"function": ..., "command": {...}}, with a progress bar.
    Exit 2 if a line was invalid (the others are sent)."""
    if source == "-":
        summary = asyncio.run(_stream(sys.stdin, None, redis_url, queue, batch, wait, outcome_ttl))
    else:
        path = Path(source)
        if not path.is_file():
            _error(f"{source}: no such file", "Give a file of JSON lines, or - to read standard input.")
            raise typer.Exit(2)
        total = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        with path.open(encoding="utf-8") as handle:
            summary = asyncio.run(_stream(handle, total, redis_url, queue, batch, wait, outcome_ttl))
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print_stream_summary(summary, out, err)
    if summary.invalid:
        raise typer.Exit(2)
    if summary.dead_letters:
        raise typer.Exit(EXIT_DEAD_LETTER)
    if summary.timed_out:
        raise typer.Exit(EXIT_TIMEOUT)


def _error(message: str, hint: str) -> None:
    """The shared error shape (as `taskline`'s): `error: …`, then what to do next."""
    print(f"error: {message}\n  {hint}", file=sys.stderr)


async def _stream(
    handle: TextIO,
    total: int | None,
    redis_url: str,
    queue: str,
    batch: int,
    wait: float | None,
    outcome_ttl: int,
) -> StreamSummary:
    async with _connect(redis_url, queue) as producer:
        return await follow_stream(
            producer, handle, total, batch=batch, wait=wait, outcome_ttl=outcome_ttl, err=err, clock=time.monotonic
        )


def expand_bare_wait(args: Sequence[str]) -> list[str]:
    """`--wait` with no number after it (last, or before another option) waits the default time."""
    expanded: list[str] = []
    for index, arg in enumerate(args):
        expanded.append(arg)
        if arg == "--wait" and (index + 1 == len(args) or args[index + 1].startswith("-")):
            expanded.append(f"{DEFAULT_WAIT_S:g}")
    return expanded


def main() -> None:
    sys.argv[1:] = expand_bare_wait(sys.argv[1:])
    run_cli(app, lambda exc: redis_problem(exc, os.environ.get("REDIS_URL", _DEFAULT_REDIS)))
