"""What `taskline-send stream` shows: the progress bar while sending, the summary after (the
sending and the waiting themselves are taskline_producer.stream_send's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskline_producer.client import TaskProducer
from taskline_producer.stream_send import StreamSummary, send_stream, wait_for_outcomes

__all__ = ["follow_stream", "print_stream_summary"]


async def follow_stream(
    producer: TaskProducer,
    handle: TextIO,
    total: int | None,
    *,
    batch: int,
    wait: float | None,
    outcome_ttl: int,
    err: Console,
    clock: Callable[[], float],
) -> StreamSummary:
    """Send the stream with a progress bar on `err` (a terminal only) and, with `wait`, follow
    every command to its outcome."""
    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as progress:
        task = progress.add_task("sending", total=total)

        def invalid(number: int, why: str) -> None:
            progress.advance(task)
            err.print(f"line {number}: invalid: {why}", markup=False, highlight=False)

        summary, sent = await send_stream(
            producer,
            handle,
            batch=batch,
            outcome_ttl=outcome_ttl if wait is not None else None,
            on_invalid=invalid,
            on_sent=lambda n: progress.advance(task, n),
        )
    if wait is not None:
        await wait_for_outcomes(producer, sent, summary, wait_s=wait, clock=clock)
    return summary


def print_stream_summary(summary: StreamSummary, out: Console, err: Console) -> None:
    """The summary on `out`; each dead letter and each command without an outcome on `err`."""
    out.print(
        f"sent {summary.queued}, refused as duplicates {summary.duplicates}, invalid {summary.invalid}",
        highlight=False,
    )
    if not summary.waited:
        return
    counts = ", ".join(f"{summary.outcomes.get(state, 0)} {state}" for state in ("applied", "duplicate"))
    out.print(
        f"outcomes: {counts}, {len(summary.dead_letters)} dead_letter, {len(summary.timed_out)} timed out",
        highlight=False,
    )
    for dead in summary.dead_letters:
        err.print(f"line {dead['line']}: dead-lettered: {dead['reason']}", markup=False, highlight=False)
        err.print(f"  `taskline trace {dead['command_id']}`", markup=False, highlight=False)
    for late in summary.timed_out:
        err.print(
            f"line {late['line']}: no final outcome in time (last seen: {late['last_seen']})",
            markup=False,
            highlight=False,
        )
        err.print(f"  `taskline trace {late['command_id']}`", markup=False, highlight=False)
