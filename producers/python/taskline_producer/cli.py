"""`taskline-send` (also `taskline send`): publish commands from flags or from JSON lines.

Needs typer and rich: `pip install "taskline-producer[cli]"` (`taskline_producer.entry` says so
when they are missing). Exit codes: 0 sent (with `--wait`: applied, or a duplicate of a command
that had taken effect), 2 invalid input, 3 refused as a duplicate job, 4 dead-lettered
(`--wait`), 5 no final outcome within the wait (`--wait`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO
from uuid import UUID, uuid4

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskline_producer.cli_errors import ServiceUnavailable, redis_problem, run_cli
from taskline_producer.client import TaskProducer
from taskline_producer.contract import COMMAND_MODELS, DEFAULT_QUEUE, OUTCOME_TTL_MAX_S, Command
from taskline_producer.outcomes import Outcome, OutcomeTimeout
from taskline_producer.receipts import Receipt

__all__ = ["DEFAULT_WAIT_S", "EXIT_DEAD_LETTER", "EXIT_TIMEOUT", "app", "expand_bare_wait", "main"]

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


def _print_result(receipt: Receipt, outcome: Outcome | OutcomeTimeout | None) -> None:
    """One JSON document: the receipt, and with --wait the outcome (or the last state seen)."""
    status = "queued" if receipt.queued else "refused: duplicate command_id"
    data: dict[str, Any] = {"command_id": str(receipt.command_id), "task_id": str(receipt.task_id), "status": status}
    if isinstance(outcome, OutcomeTimeout):
        data["outcome"] = outcome.outcome.as_dict()
        data["timed_out_after_s"] = outcome.timeout
    elif outcome is not None:
        data["outcome"] = outcome.as_dict()
    out.print_json(data=data)
    if not receipt.queued:
        raise typer.Exit(3)
    if isinstance(outcome, OutcomeTimeout):
        err.print(str(outcome), markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_TIMEOUT)
    if outcome is not None and outcome.state == "dead_letter":
        err.print(f"dead-lettered: {outcome.reason}", markup=False, soft_wrap=True)
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
    redis_url: str, queue: str, action: str, fields: dict[str, Any], wait: float | None, outcome_ttl: int
) -> None:
    if wait is not None:
        fields = {**fields, "outcome_ttl": outcome_ttl}
    try:
        receipt, outcome = asyncio.run(_one(redis_url, queue, action, fields, wait))
    except ValidationError as exc:
        err.print(f"invalid command: {_describe(exc)}", markup=False)
        raise typer.Exit(2) from None
    _print_result(receipt, outcome)


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
) -> None:
    """Send one create_task."""
    fields = {
        "user_id": user_id,
        "title": title,
        "description": description,
        "task_id": task_id,
        "command_id": command_id,
    }
    _run_one(redis_url, queue, "create_task", fields, wait, outcome_ttl)


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
) -> None:
    """Send one update_task (give --title and/or --description or --clear-description)."""
    fields: dict[str, Any] = {"task_id": task_id, "user_id": user_id, "command_id": command_id}
    if title is not None:
        fields["title"] = title
    if clear_description:
        fields["description"] = None
    elif description is not None:
        fields["description"] = description
    _run_one(redis_url, queue, "update_task", fields, wait, outcome_ttl)


@app.command()
def complete(
    task_id: TaskId,
    user_id: UserId,
    command_id: CommandId = None,
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    wait: Wait = None,
    outcome_ttl: OutcomeTtl = 3600,
) -> None:
    """Send one complete_task."""
    fields = {"task_id": task_id, "user_id": user_id, "command_id": command_id}
    _run_one(redis_url, queue, "complete_task", fields, wait, outcome_ttl)


def parse_line(line: str) -> Command:
    """One JSON line: {"function": "create_task", "command": {...}}. A missing command_id or
    issued_at is filled in (give them to make re-sending the file idempotent)."""
    item = json.loads(line)
    if (
        not isinstance(item, dict)
        or item.get("function") not in COMMAND_MODELS
        or not isinstance(item.get("command"), dict)
    ):
        raise ValueError('expected {"function": "create_task|update_task|complete_task", "command": {...}}')
    command = dict(item["command"])
    command.setdefault("command_id", str(uuid4()))
    command.setdefault("issued_at", datetime.now(UTC).isoformat())
    return COMMAND_MODELS[item["function"]].model_validate(command)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
    return str(exc)


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


@app.command()
def stream(
    source: Annotated[str, typer.Argument(help="A file of JSON lines, or - for standard input.")] = "-",
    redis_url: RedisUrl = _DEFAULT_REDIS,
    queue: Queue = DEFAULT_QUEUE,
    batch: Annotated[int, typer.Option(help="Commands pipelined per round trip.")] = 1000,
) -> None:
    """Send a stream of JSON lines, each {"function": ..., "command": {...}}, with a progress bar."""
    if source == "-":
        summary = asyncio.run(_stream(sys.stdin, None, redis_url, queue, batch))
    else:
        path = Path(source)
        if not path.is_file():
            err.print(f"{source}: no such file")
            raise typer.Exit(2)
        total = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        with path.open(encoding="utf-8") as handle:
            summary = asyncio.run(_stream(handle, total, redis_url, queue, batch))
    out.print(f"sent {summary['queued']}, refused as duplicates {summary['duplicates']}, invalid {summary['invalid']}")
    if summary["invalid"]:
        raise typer.Exit(2)


async def _stream(handle: TextIO, total: int | None, redis_url: str, queue: str, batch: int) -> dict[str, int]:
    summary = {"queued": 0, "duplicates": 0, "invalid": 0}
    pending: list[Command] = []
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    async with _connect(redis_url, queue) as producer:
        with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as progress:
            task = progress.add_task("sending", total=total)

            async def flush() -> None:
                report = await producer.send_many(pending)
                summary["queued"] += report.queued
                summary["duplicates"] += len(report.duplicates)
                progress.advance(task, len(pending))
                pending.clear()

            for number, line in _lines(handle):
                try:
                    pending.append(parse_line(line))
                except (ValueError, ValidationError) as exc:
                    summary["invalid"] += 1
                    progress.advance(task)
                    err.print(f"line {number}: invalid: {_describe(exc)}", markup=False)
                    continue
                if len(pending) >= batch:
                    await flush()
            if pending:
                await flush()
    return summary


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
