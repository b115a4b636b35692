"""How hard the purge pushes: the pause after each batch and the next batch's size.

Two signals, both read between batches, neither needing I/O here (the purger hands them in):

* **The others' commit rate.** Whoever else commits to the database (the workers, above all)
  commits at some rate; the purge reads PostgreSQL's own count (`pg_stat_database.xact_commit`)
  with every batch, subtracts its own commits, and divides by the time between readings taken at
  least `_RATE_WINDOW_S` apart (backends publish their counts about once a second, so a shorter
  window sees noise). `CommitRate` keeps the readings. Below `quiet_commits_per_s` (12) nobody
  is working and the purge runs flat out (pause `pause_ratio` × the batch's time, 0 by default);
  from `busy_commits_per_s` (25) up the workers are busy and it pauses `busy_pause_ratio` × the
  batch's time (4: it works a fifth of the time); in between the ratio rises in a straight line.
  Until the first window is over, `start_busy` decides (the scheduled purge assumes busy).
  Why these marks: one worker draining as fast as it can committed 23-39 transactions a second
  on this project's loaded 2-core machine (group commit puts dozens of commands in each) and
  about 120 on a quiet one; an idle outbox relay commits about 10 a second (two empty polls
  every 0.2 s), an idle worker none (its readiness `SELECT 1` rolls back).
* **Its own slowdown.** Per row, smoothed over a few batches, against the run's best pace: past
  1.5 times slower, the pause grows by `contention_backoff` × the batch's time × the excess, so
  contention the commit count cannot see (another database on the server, the disk) still slows
  it down. A batch slower than `slow_batch_s` also pauses at least as long as it took.
* **Short transactions.** A batch over `batch_target_s` (0.05 s, what a plain loop's batches of
  5,000 take on a quiet machine) halves the next one, so a loaded server gets smaller
  transactions rather than longer ones; batches under half of it double the next one, up to the
  plan's size.

`Pace.after_batch` is pure arithmetic on what it is given (tests/unit/test_purge_pace.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CommitRate", "Pace", "PaceRules"]

_RATE_WINDOW_S: Final = 1.0
"""Shortest time between two readings of the commit count that gives a rate."""
_RATE_MEMORY_S: Final = 3.0
"""Readings older than this (beyond the one that starts the window) are forgotten."""
_MIN_BATCH: Final = 100
_SLOWDOWN_FREE: Final = 1.5
"""Slowing down this much (per row, against the run's best pace) is noise, not contention."""
_SMOOTHING: Final = 0.3
"""Weight of the newest batch in the smoothed pace."""


@dataclass(frozen=True)
class PaceRules:
    """The pace's knobs (`PurgePlan` carries them; worker/purge/plan.py)."""

    batch: int = 5000
    pause_ratio: float = 0.0
    busy_pause_ratio: float = 4.0
    quiet_commits_per_s: float = 12.0
    busy_commits_per_s: float = 25.0
    start_busy: bool = False
    slow_batch_s: float = 1.0
    batch_target_s: float = 0.05
    contention_backoff: float = 2.0

    def pause_ratio_at(self, others_commits_per_s: float | None) -> float:
        """Pause per second of work, given the others' commit rate (None: not measured yet)."""
        if others_commits_per_s is None:
            return self.busy_pause_ratio if self.start_busy else self.pause_ratio
        span = self.busy_commits_per_s - self.quiet_commits_per_s
        busy = 1.0 if span <= 0 else (others_commits_per_s - self.quiet_commits_per_s) / span
        busy = min(1.0, max(0.0, busy))
        return self.pause_ratio + busy * max(0.0, self.busy_pause_ratio - self.pause_ratio)


@dataclass
class CommitRate:
    """The others' commits per second, from readings of the database's commit count."""

    readings: deque[tuple[float, int]] = field(default_factory=deque)
    """(clock, commits by others so far) per reading, oldest first."""
    rate: float | None = None

    def add(self, clock: float, database_commits: int, own_commits: int) -> float | None:
        """Record a reading of `pg_stat_database.xact_commit` taken after `own_commits` of the
        purge's own commits; returns the rate over the newest window of at least `_RATE_WINDOW_S`
        (the last rate while the window is shorter; None before the first)."""
        others = database_commits - own_commits
        self.readings.append((clock, others))
        while len(self.readings) > 2 and clock - self.readings[1][0] >= _RATE_MEMORY_S:
            self.readings.popleft()
        start = None
        for when, count in reversed(self.readings):
            if clock - when >= _RATE_WINDOW_S:
                start = (when, count)
                break
        if start is not None:
            self.rate = max(0.0, (others - start[1]) / (clock - start[0]))
        return self.rate


@dataclass
class Pace:
    """One table's run: the batch size and the pause after each batch (see the module docstring)."""

    rules: PaceRules
    batch: int = 0
    per_row: float | None = None  # seconds per row, smoothed
    best_per_row: float | None = None  # the run's best smoothed pace: the uncontended one

    def __post_init__(self) -> None:
        self.batch = self.batch or self.rules.batch

    def after_batch(self, took: float, deleted: int, others_commits_per_s: float | None) -> float:
        """The pause after a full batch that deleted `deleted` rows in `took` seconds; also sets the
        next batch's size."""
        rules = self.rules
        per_row = took / max(1, deleted)
        self.per_row = per_row if self.per_row is None else (1 - _SMOOTHING) * self.per_row + _SMOOTHING * per_row
        self.best_per_row = self.per_row if self.best_per_row is None else min(self.best_per_row, self.per_row)
        slowdown = self.per_row / self.best_per_row if self.best_per_row > 0 else 1.0
        ratio = rules.pause_ratio_at(others_commits_per_s)
        pause = took * (ratio + rules.contention_backoff * max(0.0, slowdown - _SLOWDOWN_FREE))
        if took > rules.slow_batch_s:
            pause = max(pause, took)
        if took > rules.batch_target_s:
            self.batch = min(rules.batch, max(_MIN_BATCH, self.batch // 2))
        elif took < rules.batch_target_s / 2:
            self.batch = min(rules.batch, self.batch * 2)
        return pause
