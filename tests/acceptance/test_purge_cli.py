"""`taskline purge` and `taskline scheduler` as real processes.

`--older-than 0s` removes every completed task of the test database: the tests here count what
is there rather than assuming it is only their own rows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from tests.conftest import procfile_command, worker_env
from worker.config.settings import Settings

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent


def taskline(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "taskline"), *args],
        env=worker_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def seed(db: asyncpg.Connection, *, completed: int, open_: int) -> list[UUID]:
    ids = []
    when = datetime.now(UTC) - timedelta(hours=1)
    for i in range(completed + open_):
        task_id = uuid4()
        ids.append(task_id)
        done = i < completed
        await db.execute(
            """INSERT INTO task (id, user_id, title, completed, completed_at, title_issued_at, title_command_id,
                                 description_issued_at, description_command_id)
               VALUES ($1, 1, 'cli purge', $2, $3, $4, gen_random_uuid(), $4, gen_random_uuid())""",
            task_id,
            done,
            when if done else None,
            when,
        )
    return ids


async def due(db: asyncpg.Connection) -> dict[str, int]:
    """What `--older-than 0s` should find now: every completed task, bookkeeping past its defaults."""
    return {
        "task": await db.fetchval("SELECT count(*) FROM task WHERE completed"),
        "processed_command": await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE processed_at < now() - interval '2 days'"
        ),
        "dead_letter": await db.fetchval(
            "SELECT count(*) FROM dead_letter WHERE failed_at < now() - interval '30 days'"
        ),
    }


async def test_dry_run_counts_what_would_go_and_deletes_nothing(
    settings: Settings, db: asyncpg.Connection, users: list[int]
) -> None:
    """`taskline purge --dry-run --older-than 0s` prints the counts (a table, or JSON) and leaves every row."""
    await seed(db, completed=3, open_=2)
    expected = await due(db)
    before = await db.fetchval("SELECT count(*) FROM task")

    shown = taskline(settings, "purge", "--dry-run", "--older-than", "0s")
    as_json = taskline(settings, "purge", "--dry-run", "--older-than", "0s", "--json")

    assert shown.returncode == 0, shown.stderr
    assert "dry run: nothing deleted" in shown.stdout
    assert "completed tasks" in shown.stdout
    assert "would delete" in shown.stdout
    assert f"{sum(expected.values()):,} rows would be deleted" in shown.stdout
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["dry_run"] is True
    assert summary["rows"] == expected
    assert await db.fetchval("SELECT count(*) FROM task") == before


async def test_purge_deletes_completed_tasks_and_prints_a_summary(
    settings: Settings, db: asyncpg.Connection, users: list[int]
) -> None:
    """A real run in small batches (so the progress bar path runs): completed tasks go, open ones stay."""
    ids = await seed(db, completed=5, open_=2)
    expected = await due(db)

    result = taskline(settings, "purge", "--older-than", "0s", "--batch", "2")

    assert result.returncode == 0, result.stderr
    assert f"deleted {sum(expected.values()):,} rows in " in result.stdout
    assert "batches" in result.stdout
    assert "rows/s" in result.stdout
    assert "run it again" not in result.stdout
    assert await db.fetchval("SELECT count(*) FROM task WHERE completed") == 0
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", ids) == 2

    again = taskline(settings, "purge", "--older-than", "0s", "--json")
    assert json.loads(again.stdout)["rows"]["task"] == 0


async def test_the_default_retention_keeps_recent_completed_tasks(
    settings: Settings, db: asyncpg.Connection, users: list[int]
) -> None:
    """Without --older-than, TASKLINE_PURGE_RETENTION applies: an hour-old completed task stays."""
    ids = await seed(db, completed=1, open_=0)
    result = taskline(settings, "purge", "--json", TASKLINE_PURGE_RETENTION="2h")
    assert result.returncode == 0, result.stderr
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", ids[0]) == 1


def test_a_bad_age_or_setting_is_refused(settings: Settings) -> None:
    bad_age = taskline(settings, "purge", "--older-than", "soon")
    assert bad_age.returncode == 2
    assert "not an age" in bad_age.stderr
    bad_setting = taskline(settings, "purge", "--dry-run", TASKLINE_PROCESSED_RETENTION="1h")
    assert bad_setting.returncode == 2
    assert "TASKLINE_PROCESSED_RETENTION" in bad_setting.stderr


def test_the_procfile_scheduler_starts_and_stops_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    """`scheduler: taskline scheduler` from the Procfile comes up on `<queue>:scheduler` and exits 0 on SIGTERM."""
    log_path = tmp_path / "scheduler.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(procfile_command("scheduler"), env=worker_env(settings), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and "scheduler started" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, log_path.read_text()
        line = next(json.loads(x) for x in log_path.read_text().splitlines() if "scheduler started" in x)
        assert line["queue"] == f"{settings.queue}:scheduler"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
