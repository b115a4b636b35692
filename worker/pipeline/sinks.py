"""What the pipeline reports to, handed to it by the process that runs it.

The pipeline sits below the in-worker observability (`worker/observe/`), so it never imports
it: `worker.observe.metrics.Metrics`, `worker.observe.outages.OutageLog` and the spans of
`worker.observe.tracing` satisfy these protocols, and the worker's wiring hands them in (tests
hand in their own). A worker that does not trace hands in no tracer: the pipeline then checks
one `None` per job and builds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

__all__ = ["CommandMetrics", "CommitMark", "JobTrace", "OutageReporter", "TransactionTracer"]


class CommandMetrics(Protocol):
    """Counts what happened to commands and jobs."""

    def in_progress(self, function: str) -> AbstractContextManager[None]: ...

    def processed(self, function: str, outcome: str, seconds: float, issued_at: datetime) -> None: ...

    def processed_in_bulk(self, function: str, outcome: str, issued_ats: Sequence[datetime]) -> None: ...

    def bulk_applied(self, seconds: float) -> None: ...

    def retried(self, function: str, kind: str, count: int = 1) -> None: ...

    def dead_lettered(self, function: str, kind: str) -> None: ...


class OutageReporter(Protocol):
    """Says once when a service goes away and once when it is back."""

    @property
    def is_down(self) -> bool: ...

    def down(self, error: BaseException, *, what: str = "") -> None: ...

    def up(self) -> None: ...


class JobTrace(Protocol):
    """One job's spans, when the worker traces: what the pipeline tells them."""

    def outcome(self, value: str) -> None: ...

    def retry(self, kind: str, reason: str, delay_s: float) -> None: ...

    def end(self, ending: str, result: str | None) -> None:
        """The job ended (the job runner's ending: finish, defer, release or leave)."""
        ...

    def dead_letter(
        self, kind: str, reason: str, *, item: int | None = None, command_id: str | None = None
    ) -> None: ...


class CommitMark(Protocol):
    def committing(self) -> None:
        """Called when the statements are done and the COMMIT is sent."""
        ...


class TransactionTracer(Protocol):
    """The span of one transaction, linked to the jobs whose commands it applies."""

    def transaction(self, traces: Sequence[JobTrace], size: int) -> AbstractContextManager[CommitMark]: ...
