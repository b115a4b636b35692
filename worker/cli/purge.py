"""`taskline purge`: the purge by hand, with a progress bar and a summary (worker/purge/purger.py does the work)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.config.settings import Settings
from worker.logs import configure_logging
from worker.purge.plan import PurgePlan, PurgeSummary
from worker.purge.purger import count_due, make_purge_engine, purge

__all__ = ["run_purge_cli"]

_LABELS = {"task": "completed tasks", "processed_command": "processed commands", "dead_letter": "dead letters"}


def run_purge_cli(
    settings: Settings,
    *,
    older_than: timedelta | None,
    dry_run: bool,
    batch: int | None,
    time_budget: float | None,
    as_json: bool,
    out: Console,
    err: Console,
) -> PurgeSummary:
    # The summary says it all, and `taskline` explains a database it cannot use: keep stderr quiet.
    configure_logging(settings.log_format, "CRITICAL")
    changes: dict[str, object] = {"time_budget": time_budget}
    if older_than is not None:
        changes["task_retention"] = older_than
    if batch is not None:
        changes["batch"] = batch
    plan = PurgePlan.from_settings(settings, **changes)
    summary = asyncio.run(_run(settings, plan, dry_run=dry_run, show_progress=not as_json, err=err))
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        _print_summary(summary, out)
    return summary


async def _run(
    settings: Settings, plan: PurgePlan, *, dry_run: bool, show_progress: bool, err: Console
) -> PurgeSummary:
    engine = make_purge_engine(settings)
    now = datetime.now(UTC)
    try:
        if dry_run:
            return await purge(engine, plan, now=now, dry_run=True)
        due = await count_due(engine, plan, now)
        if not show_progress or sum(due.values()) <= plan.batch:
            return await purge(engine, plan, now=now)
        columns = (
            TextColumn("{task.description:>20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            tasks = {table: bar.add_task(_LABELS[table], total=count) for table, count in due.items()}
            return await purge(engine, plan, now=now, progress=lambda table, n: bar.advance(tasks[table], n))
    finally:
        await engine.dispose()


def _print_summary(summary: PurgeSummary, out: Console) -> None:
    verb = "would delete" if summary.dry_run else "deleted"
    table = Table("table", "older than", verb, title="dry run: nothing deleted" if summary.dry_run else None)
    for name, cutoff in summary.cutoffs.items():
        table.add_row(_LABELS[name], cutoff.strftime("%Y-%m-%d %H:%M:%S UTC"), f"{summary.rows.get(name, 0):,}")
    out.print(table)
    if summary.dry_run:
        out.print(f"{summary.total:,} rows would be deleted", highlight=False)
        return
    out.print(
        f"{verb} {summary.total:,} rows in {summary.batches} batches, {summary.seconds:.1f} s"
        f" ({summary.rows_per_second:,.0f} rows/s)",
        highlight=False,
    )
    if not summary.complete:
        out.print("stopped by the time budget with rows still due: run it again", highlight=False)
