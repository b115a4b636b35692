"""`taskline-send stream FILE [--wait]`: send JSON lines in pipelined batches and, with a wait,
follow every command to its final outcome.

Lines are parsed and validated one by one (an invalid line is reported by its number and
skipped); the valid ones go out `batch` at a time through `TaskProducer.send_many`. With a wait,
every command sent asks for its outcome, and after the last batch all of them are waited for
against one deadline (the wait's seconds, counted from the end of sending): a command whose
outcome is final by then counts as applied, duplicate or dead letter, any other as timed out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from uuid import UUID, uuid4

from pydantic import ValidationError

from taskline_producer.client import TaskProducer
from taskline_producer.contract import COMMAND_MODELS, Command
from taskline_producer.outcomes import OutcomeTimeout
from taskline_producer.wire import epoch_ms

__all__ = ["Sent", "StreamSummary", "describe_invalid", "parse_line", "send_stream", "wait_for_outcomes"]


@dataclass(slots=True)
class Sent:
    """One command sent from the stream: its line, and the time of its send (None when Redis
    refused it as a duplicate job: then the outcome of the job already queued is its own)."""

    line: int
    command: Command
    sent_at_ms: int | None


@dataclass(slots=True)
class StreamSummary:
    """What `stream` did, and with a wait what became of each command."""

    queued: int = 0
    duplicates: int = 0
    invalid: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    timed_out: list[dict[str, Any]] = field(default_factory=list)
    waited: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"queued": self.queued, "duplicates": self.duplicates, "invalid": self.invalid}
        if self.waited:
            data |= {"outcomes": self.outcomes, "dead_letters": self.dead_letters, "timed_out": self.timed_out}
        return data


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


def describe_invalid(exc: Exception) -> str:
    """A validation error (or a JSON one) in one line, field by field."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
    return str(exc)


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


async def send_stream(
    producer: TaskProducer,
    source: TextIO,
    *,
    batch: int,
    outcome_ttl: int | None,
    on_invalid: Callable[[int, str], None],
    on_sent: Callable[[int], None],
) -> tuple[StreamSummary, list[Sent]]:
    """Send every valid line; the summary so far and (with `outcome_ttl`) the commands to wait for."""
    summary = StreamSummary()
    pending: list[tuple[int, Command]] = []
    sent: list[Sent] = []

    async def flush() -> None:
        started_ms = epoch_ms()  # every job of this batch is enqueued at or after it
        report = await producer.send_many([command for _, command in pending], outcome_ttl=outcome_ttl)
        summary.queued += report.queued
        summary.duplicates += len(report.duplicates)
        if outcome_ttl is not None:
            refused = set(report.duplicates)
            sent.extend(
                Sent(line, command, None if command.command_id in refused else started_ms) for line, command in pending
            )
        on_sent(len(pending))
        pending.clear()

    for number, line in _lines(source):
        try:
            pending.append((number, parse_line(line)))
        except (ValueError, ValidationError) as exc:
            summary.invalid += 1
            on_invalid(number, describe_invalid(exc))
            continue
        if len(pending) >= batch:
            await flush()
    if pending:
        await flush()
    return summary, sent


async def wait_for_outcomes(
    producer: TaskProducer, sent: list[Sent], summary: StreamSummary, *, wait_s: float, clock: Callable[[], float]
) -> None:
    """Wait until each command's outcome is final or the shared deadline passes; count them."""
    summary.waited = True
    deadline = clock() + wait_s
    for item in sent:
        command_id: UUID = item.command.command_id
        remaining = max(deadline - clock(), 0.001)
        try:
            outcome = await producer.outcome(command_id, timeout=remaining, sent_at_ms=item.sent_at_ms)
        except OutcomeTimeout as exc:
            summary.timed_out.append({"line": item.line, "command_id": str(command_id), "last_seen": exc.outcome.state})
            continue
        summary.outcomes[outcome.state] = summary.outcomes.get(outcome.state, 0) + 1
        if outcome.state == "dead_letter":
            summary.dead_letters.append({"line": item.line, "command_id": str(command_id), "reason": outcome.reason})
