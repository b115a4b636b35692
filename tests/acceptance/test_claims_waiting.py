"""After a worker is SIGKILLed, its claimed jobs wait for their claims to expire: `taskline status`,
`taskline health`, `taskline metrics` and the scheduler's log say so, and then say they were
picked up again."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from taskline_producer import TaskProducer
from taskline_producer.keys import heartbeat_key

from tests.conftest import procfile_command, taskline, wait_for, worker_env
from worker.config.settings import Settings

pytestmark = pytest.mark.acceptance

FAST = {"TASKLINE_JOB_TIMEOUT": "3", "TASKLINE_HEARTBEAT_INTERVAL": "0.5"}
"""Claims expire 3 + 5 + 10 = 18 s after a claim; heartbeats every 0.5 s."""


def _log_lines(path: Path, event: str) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and event in str(record.get("event", "")):
            lines.append(record)
    return lines


@pytest.fixture
def scheduler_log(settings: Settings, tmp_path: Path) -> Iterator[Path]:
    """A `scheduler` process from the Procfile (its fleet watch logs the claims); its log's path."""
    path = tmp_path / "scheduler.log"
    with path.open("ab") as out:
        scheduler = subprocess.Popen(
            procfile_command("scheduler"), env=worker_env(settings, **FAST), stdout=out, stderr=subprocess.STDOUT
        )
    yield path
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(30)


async def test_claims_of_a_killed_worker_are_visible_until_they_expire_and_then_picked_up(
    settings: Settings, redis, db, users, start_worker, scheduler_log: Path
):
    """A job stuck in a killed worker shows as a claim waiting to expire (status, health, metrics,
    a WARNING from the scheduler's fleet watch); once the claim expires another worker applies it
    and the scheduler logs the pickup."""
    worker = start_worker(**FAST)
    await wait_for(lambda: "worker started" in worker.log(), timeout=30)
    worker_id = next(json.loads(x) for x in worker.log().splitlines() if "worker started" in x)["worker_id"]
    # Hold user 1's row: the worker's INSERT of a task for user 1 waits on it (its foreign key check).
    lock = db.transaction()
    await lock.start()
    await db.execute('SELECT 1 FROM "user" WHERE id = 1 FOR UPDATE')
    receipt = await TaskProducer(redis, queue=settings.queue).create_task(user_id=1, title="stuck")
    job_id = str(receipt.command_id)

    async def listed_as_running() -> bool:
        raw = await redis.get(heartbeat_key(settings.queue, worker_id))
        return raw is not None and job_id in json.loads(raw).get("running_job_ids", [])

    await wait_for(listed_as_running, timeout=10, interval=0.05)
    worker.signal(signal.SIGKILL)
    assert worker.proc.wait(5) == -signal.SIGKILL
    await lock.rollback()

    async def status_shows_it() -> dict[str, object] | None:
        result = await taskline(settings, "status", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        return data if data["depth"]["claims_waiting_to_expire"] == 1 else None

    data = await wait_for(status_shows_it, timeout=10, interval=0.2)
    (claim,) = data["claims_waiting_to_expire"]  # type: ignore[misc]
    assert (claim["job_id"], claim["worker_id"]) == (job_id, worker_id)
    assert 0 < claim["expires_in_s"] <= 18
    health = await taskline(settings, "health", "--all", "--json")
    assert [c["job_id"] for c in json.loads(health.stdout)["claims_waiting_to_expire"]] == [job_id]
    text = await taskline(settings, "health", "--all")
    assert "wait for their claims to expire" in text.stdout + text.stderr
    metrics = await taskline(settings, "metrics")
    assert f'taskline_claims_waiting_to_expire{{queue="{settings.queue}"}} 1.0' in metrics.stdout
    warning = await wait_for(lambda: _log_lines(scheduler_log, "claims waiting to expire"), timeout=10)
    assert warning[0]["stopped_worker"] == worker_id
    assert warning[0]["level"] == "warning"

    start_worker(**FAST)
    picked = await wait_for(lambda: _log_lines(scheduler_log, "claims expired"), timeout=30, interval=0.2)
    assert picked[0]["jobs"] == 1
    applied = await wait_for(
        lambda: db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", UUID(job_id)),
        timeout=20,
    )
    assert applied == 1
    after = json.loads((await taskline(settings, "status", "--json")).stdout)
    assert after["depth"]["claims_waiting_to_expire"] == 0
