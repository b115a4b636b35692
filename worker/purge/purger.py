"""The purge: delete completed tasks past their retention, and taskline's bookkeeping past its own.

One run removes, in this order:

1. completed tasks whose `completed_at` is older than `TASKLINE_PURGE_RETENTION` (30 days);
2. `processed_command` rows older than `TASKLINE_PROCESSED_RETENTION` (2 days), which must
   outlive the redelivery horizon (job TTL + not-yet window + retries + arq timeout; the formula
   is in `worker/config/retention.py` and a shorter setting is refused at startup);
3. dead letters older than `TASKLINE_DEAD_LETTER_RETENTION` (30 days).

Open tasks are never touched. Every table is purged in bounded batches, each its own short
transaction::

    DELETE FROM task WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM task WHERE completed AND completed_at < :cutoff
        ORDER BY completed_at LIMIT :batch FOR UPDATE SKIP LOCKED))

* The subquery walks the partial index `ix_task_completed_at_completed`, oldest first (tests
  check the plan), and locks the rows it returns. `SKIP LOCKED`: the purge never waits for a row
  a worker is writing; that row is left for the next run. No batch holds locks for long, so the
  workers see no lock waits either.
* The outer DELETE finds the rows by their physical address (a TID scan), which costs nothing,
  where `WHERE id IN (subquery)` got a hash semi join over a sequential scan of the whole table
  and `WHERE id = ANY(ARRAY(subquery))` one primary-key descent per row (1.6 times slower). The
  address is safe to use: it comes from the same statement, which holds the row's lock, so the
  row cannot be updated, moved or removed in between; a row updated after the statement's
  snapshot is not visible to the DELETE and simply stays until the next run.
* Each batch commits with `synchronous_commit = off`: a commit lost in a crash only means its rows
  go next time, and the purge never waits on the WAL flush the workers' commits need. The same
  first statement of the batch reads the database's commit count (`pg_stat_database`) and, on
  PostgreSQL 15 and later, asks for this backend's own counts to be published at its commit
  (`pg_stat_force_next_flush()`), so the purge can subtract its own commits exactly.

Back-off (worker/purge/pace.py): after each batch the purge pauses in proportion to the time the
batch took, by how busy everyone else is, judged by their commit rate: nobody else committing,
no pause at all (`taskline purge` on a quiet database runs at PostgreSQL's speed); from 25
commits/s up (the workers are busy), 4 × the batch's time, so the purge works a fifth of the time.
On top of that it slows down when its own batches run slower than its best pace, and halves the
batch when one takes longer than `slow_batch_s`. The scheduled purge starts as if the workers
were busy until it has measured them (about a second).

A run stops inside its time budget (`TASKLINE_PURGE_TIME_BUDGET`, 50 s): no batch starts without
time left, and each batch runs under a `statement_timeout` of the time that remains. What is left
waits for the next run; a backlog of any size drains over several runs. Completed tasks may use
80 % of the budget when the bookkeeping tables follow, so a large task backlog never starves them.

`purge()` runs a `PurgePlan` over the tables it names (worker/purge/plan.py) and returns a
`PurgeSummary` (rows per table, batches, seconds, whether everything due was removed), logs one
structured line per run and counts `taskline_purge_rows_deleted_total` and
`taskline_purge_duration_seconds`. With `dry_run=True` it only counts what would go.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from worker.config.settings import Settings
from worker.logs import get_logger
from worker.purge.pace import CommitRate, Pace
from worker.purge.plan import DEAD_LETTERS, PROCESSED_COMMANDS, TARGETS, TASKS, PurgePlan, PurgeSummary, Target
from worker.store.engine import for_pooler

__all__ = ["Progress", "PurgeMetrics", "count_due", "make_purge_engine", "purge"]

_QUERY_CANCELED: Final = "57014"
_TASK_SHARE: Final = 0.8
"""Share of the time budget completed tasks may use when the bookkeeping tables follow."""
_FORCE_FLUSH_SINCE: Final = (15,)
"""PostgreSQL 15 added pg_stat_force_next_flush()."""

# A batch's first statement: the transaction's settings (the time left, when there is a budget;
# otherwise the session's own statement_timeout stays) and the database's commit count.
_BATCH_SETUP: Final = (
    "SELECT set_config('synchronous_commit', 'off', true),"
    " set_config('statement_timeout', coalesce(:timeout_ms, current_setting('statement_timeout')), true),"
    " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()){flush}"
)
_SETUP_WITH_FLUSH: Final = sa.text(_BATCH_SETUP.format(flush=", pg_stat_force_next_flush()"))
_SETUP_WITHOUT_FLUSH: Final = sa.text(_BATCH_SETUP.format(flush=""))


class PurgeMetrics(Protocol):
    """Where a purge run reports (`worker.observe.metrics.Metrics` in the scheduler)."""

    def purge_finished(self, seconds: float) -> None: ...

    def purged(self, table: str, rows: int) -> None: ...


Progress = Callable[[str, int], None]
"""Called after every batch with the table and the rows the batch deleted."""


def make_purge_engine(settings: Settings) -> AsyncEngine:
    """A small engine of the purge's own: one connection is all it uses."""
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "taskline-purge"}}
    return create_async_engine(
        for_pooler(settings.database_url, settings.database_pooler_mode, connect_args),
        pool_size=1,
        max_overflow=1,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


async def count_due(engine: AsyncEngine, plan: PurgePlan, now: datetime) -> dict[str, int]:
    """How many rows of each table the plan would delete at `now`."""
    counts = {}
    async with engine.connect() as conn:
        for target in TARGETS:
            retention = plan.retention(target)
            if retention is not None:
                result = await conn.execute(target.count_sql, {"cutoff": now - retention})
                counts[target.table] = int(result.scalar_one())
    return counts


async def purge(
    engine: AsyncEngine,
    plan: PurgePlan,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    metrics: PurgeMetrics | None = None,
    log: Any = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PurgeSummary:
    """Run the purge once (see the module docstring); `now` defaults to the current time."""
    log = log or get_logger("taskline.purge")
    now = now or datetime.now(UTC)
    summary = PurgeSummary(now=now, dry_run=dry_run, cutoffs=plan.cutoffs(now))
    started = clock()
    outcome = "error"
    try:
        if dry_run:
            summary.rows = await count_due(engine, plan, now)
        else:
            commits = CommitRate()
            targets = [t for t in TARGETS if t.table in summary.cutoffs]
            for index, target in enumerate(targets):
                deadline = None
                if plan.time_budget is not None:
                    share = _TASK_SHARE if target is TASKS and index < len(targets) - 1 else 1.0
                    deadline = started + plan.time_budget * share
                done = await _purge_table(
                    engine,
                    target,
                    summary,
                    Pace(plan.pace_rules()),
                    commits,
                    deadline,
                    progress=progress,
                    metrics=metrics,
                    sleep=sleep,
                    clock=clock,
                )
                summary.complete = summary.complete and done
        outcome = "finished"
    except asyncio.CancelledError:
        outcome = "cancelled"  # a SIGTERM: the open batch rolled back
        raise
    finally:
        summary.seconds = clock() - started
        if metrics is not None and not dry_run:
            metrics.purge_finished(summary.seconds)
        line = {"finished": log.info, "cancelled": log.warning}.get(outcome, log.error)
        line(
            "purge dry run" if dry_run else f"purge {outcome}",
            tasks=summary.rows.get(TASKS.table, 0),
            processed_commands=summary.rows.get(PROCESSED_COMMANDS.table, 0),
            dead_letters=summary.rows.get(DEAD_LETTERS.table, 0),
            batches=summary.batches,
            duration_s=round(summary.seconds, 3),
            complete=summary.complete if outcome == "finished" else False,
            rows_per_s=round(summary.rows_per_second),
            longest_batch_s=round(summary.longest_batch_s, 3),
            paused_s=round(summary.paused_s, 3),
        )
    return summary


async def _purge_table(
    engine: AsyncEngine,
    target: Target,
    summary: PurgeSummary,
    pace: Pace,
    commits: CommitRate,
    deadline: float | None,
    *,
    progress: Progress | None,
    metrics: PurgeMetrics | None,
    sleep: Callable[[float], Awaitable[Any]],
    clock: Callable[[], float],
) -> bool:
    """Delete batch after batch; True when nothing due is left (rows locked by writers aside)."""
    cutoff = summary.cutoffs[target.table]
    summary.rows.setdefault(target.table, 0)
    while True:
        remaining = None if deadline is None else deadline - clock()
        if remaining is not None and remaining < 0.05:
            return False
        began = clock()
        batch = pace.batch
        try:
            async with engine.begin() as conn:
                database_commits = await _begin_batch(conn, remaining)
                result = await conn.execute(target.delete_sql, {"cutoff": cutoff, "batch": batch})
                deleted = int(result.rowcount or 0)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _QUERY_CANCELED:
                return False  # the statement hit the time left in the budget; rolled back
            raise
        took = clock() - began
        # The reading was taken inside this batch, after the purge's earlier batches committed.
        summary.others_commits_per_s = commits.add(began, database_commits, summary.batches)
        summary.batches += 1
        summary.longest_batch_s = max(summary.longest_batch_s, took)
        summary.rows[target.table] += deleted
        if metrics is not None and deleted:
            metrics.purged(target.table, deleted)
        if progress is not None:
            progress(target.table, deleted)
        if deleted < batch:
            return True
        pause = pace.after_batch(took, deleted, summary.others_commits_per_s)
        if deadline is not None and clock() + pause >= deadline:
            return False
        if pause > 0:
            summary.paused_s += pause
            await sleep(pause)


async def _begin_batch(conn: AsyncConnection, remaining: float | None) -> int:
    """The batch's settings (see `_BATCH_SETUP`); returns the database's commit count so far."""
    # A lost purge commit only means the rows go next time: no need to wait for the WAL flush.
    version = conn.dialect.server_version_info or ()
    setup = _SETUP_WITH_FLUSH if tuple(version) >= _FORCE_FLUSH_SINCE else _SETUP_WITHOUT_FLUSH
    timeout_ms = None if remaining is None else str(max(1, int(remaining * 1000)))
    row = (await conn.execute(setup, {"timeout_ms": timeout_ms})).one()
    return int(row[2])
