"""What the pipeline reports to, handed to it by the process that runs it.

The pipeline sits below the in-worker observability (`worker/observe/`), so it never imports
it: `worker.observe.metrics.Metrics` and `worker.observe.outages.OutageLog` satisfy these
protocols, and the worker's wiring hands them in (tests hand in their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

__all__ = ["CommandMetrics", "OutageReporter"]


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
