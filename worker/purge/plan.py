"""What a purge run deletes and what it reports: the tables (`Target`, each with its batch DELETE
and its count, built from the table models), the `PurgePlan` (retentions and pace, from the
settings) and the `PurgeSummary`. The run itself, and why its DELETE looks the way it does:
worker/purge/purger.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Final

import sqlalchemy as sa

from worker.config.settings import Settings
from worker.purge.pace import PaceRules
from worker.store.compiled import compiled_text
from worker.store.models import DeadLetter, ProcessedCommand, Task, table_of

__all__ = ["DEAD_LETTERS", "PROCESSED_COMMANDS", "TARGETS", "TASKS", "PurgePlan", "PurgeSummary", "Target"]


@dataclass(frozen=True, eq=False)
class Target:
    """One table the purge deletes from: rows whose `stamp` column is older than the cutoff,
    among those matching `only` (when given: it must match a partial index's predicate)."""

    stamp: sa.Column[datetime]
    only: sa.ColumnElement[bool] | None = None

    @property
    def table(self) -> str:
        return self.stamp.table.name

    def _where(self) -> list[sa.ColumnElement[bool]]:
        due = self.stamp < sa.bindparam("cutoff")
        return [due] if self.only is None else [self.only, due]

    @cached_property
    def delete_sql(self) -> sa.TextClause:
        """One batch: `DELETE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... LIMIT :batch FOR UPDATE
        SKIP LOCKED))` (see the module docstring), rendered once."""
        table = self.stamp.table
        ctid: sa.ColumnClause[Any] = sa.column("ctid")  # PostgreSQL's system column: the row's address
        batch = (
            sa.select(ctid)
            .select_from(table)
            .where(*self._where())
            .order_by(self.stamp)
            .limit(sa.bindparam("batch"))
            .with_for_update(skip_locked=True)
            .correlate(None)
        )
        return compiled_text(sa.delete(table).where(ctid == sa.any_(sa.func.array(batch.scalar_subquery()))))

    @cached_property
    def count_sql(self) -> sa.TextClause:
        return compiled_text(sa.select(sa.func.count()).select_from(self.stamp.table).where(*self._where()))


_TASK: Final = table_of(Task)
TASKS: Final = Target(_TASK.c.completed_at, only=_TASK.c.completed)
PROCESSED_COMMANDS: Final = Target(table_of(ProcessedCommand).c.processed_at)
DEAD_LETTERS: Final = Target(table_of(DeadLetter).c.failed_at)
TARGETS: Final = (TASKS, PROCESSED_COMMANDS, DEAD_LETTERS)


@dataclass(frozen=True)
class PurgePlan:
    """What to purge and how hard to push (the pace's fields: worker/purge/pace.py). A retention of
    None leaves that table alone."""

    task_retention: timedelta | None
    processed_retention: timedelta | None
    dead_letter_retention: timedelta | None
    batch: int = PaceRules.batch
    time_budget: float | None = 50.0  # seconds; None: until done
    # the pace (defaults and meaning: worker/purge/pace.py's PaceRules)
    slow_batch_s: float = PaceRules.slow_batch_s
    batch_target_s: float = PaceRules.batch_target_s  # a batch over this halves the next one
    pause_ratio: float = PaceRules.pause_ratio  # pause per second of work while nobody else commits
    busy_pause_ratio: float = PaceRules.busy_pause_ratio  # ... while the others are busy
    quiet_commits_per_s: float = PaceRules.quiet_commits_per_s
    busy_commits_per_s: float = PaceRules.busy_commits_per_s
    start_busy: bool = PaceRules.start_busy  # assume busy until the commit rate is known
    contention_backoff: float = PaceRules.contention_backoff

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> PurgePlan:
        plan = cls(
            task_retention=timedelta(seconds=settings.purge_retention),
            processed_retention=timedelta(seconds=settings.processed_retention),
            dead_letter_retention=timedelta(seconds=settings.dead_letter_retention),
            batch=settings.purge_batch,
            time_budget=settings.purge_time_budget,
        )
        return cls(**{**plan.__dict__, **changes})

    @classmethod
    def scheduled(cls, settings: Settings, **changes: Any) -> PurgePlan:
        """The scheduler's plan: unattended, beside the workers, so gentle from the first batch until
        their commit rate is known (`taskline purge`, run by hand, starts at full speed)."""
        return cls.from_settings(settings, **{"start_busy": True, **changes})

    def pace_rules(self) -> PaceRules:
        return PaceRules(
            batch=self.batch,
            pause_ratio=self.pause_ratio,
            busy_pause_ratio=self.busy_pause_ratio,
            quiet_commits_per_s=self.quiet_commits_per_s,
            busy_commits_per_s=self.busy_commits_per_s,
            start_busy=self.start_busy,
            slow_batch_s=self.slow_batch_s,
            batch_target_s=self.batch_target_s,
            contention_backoff=self.contention_backoff,
        )

    def retention(self, target: Target) -> timedelta | None:
        return {
            TASKS.table: self.task_retention,
            PROCESSED_COMMANDS.table: self.processed_retention,
            DEAD_LETTERS.table: self.dead_letter_retention,
        }[target.table]

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Per table, the time before which rows go."""
        cutoffs = {}
        for target in TARGETS:
            retention = self.retention(target)
            if retention is not None:
                cutoffs[target.table] = now - retention
        return cutoffs


@dataclass
class PurgeSummary:
    """What one run did (or, for a dry run, would do)."""

    now: datetime
    dry_run: bool
    cutoffs: dict[str, datetime]
    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    longest_batch_s: float = 0.0  # the longest transaction
    paused_s: float = 0.0  # time spent pausing between batches (the back-off)
    others_commits_per_s: float | None = None  # the last commit rate of everyone else, if measured
    complete: bool = True  # False: stopped by the time budget (or an error) with rows still due

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "cutoffs": {table: cutoff.isoformat() for table, cutoff in self.cutoffs.items()},
            "rows": dict(self.rows),
            "total": self.total,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "longest_batch_s": round(self.longest_batch_s, 4),
            "paused_s": round(self.paused_s, 3),
            "others_commits_per_s": None if self.others_commits_per_s is None else round(self.others_commits_per_s, 1),
            "complete": self.complete,
        }
