"""After a worker is SIGKILLed, its claimed jobs are seen at once (`taskline status`, `taskline
health`, `taskline metrics`, `taskline trace` and the scheduler's log), though no heartbeat listed
them, and a live worker takes them over as soon as the killed one is judged dead: within about
three heartbeat intervals, not the claim's full expiry; each is applied once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from taskline_producer import TaskProducer
from taskline_producer.keys import in_progress_key

from tests.conftest import procfile_command, taskline, wait_for, worker_env
from worker.config.settings import Settings

pytestmark = pytest.mark.acceptance

FAST = {"TASKLINE_JOB_TIMEOUT": "30", "TASKLINE_HEARTBEAT_INTERVAL": "1"}
"""Claims expire 30 + 5 + 10 = 45 s after a claim; heartbeats every second, so a killed worker is
dead three seconds after its last beat."""
CLAIM_TTL_S = 45.0
JOBS = 5


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


async def test_claims_of_a_killed_worker_are_seen_at_once_and_taken_over_when_it_is_dead(
    settings: Settings, redis, db, users, start_worker, scheduler_log: Path
):
    """Jobs a worker claimed just before it was killed (no heartbeat listed them) show in a WARNING
    from the scheduler's fleet watch as soon as it has missed its beats; a live worker takes them
    over about three heartbeat intervals after the kill, long before their claims expire, the
    scheduler logs the pickup, and each is applied once, by the live worker."""
    victim = start_worker(**FAST)
    await wait_for(lambda: "worker started" in victim.log(), timeout=30)
    victim_id = next(json.loads(x) for x in victim.log().splitlines() if "worker started" in x)["worker_id"]
    # Hold user 1's row: the workers' INSERTs of tasks for user 1 wait on it (the foreign key check).
    lock = db.transaction()
    await lock.start()
    await db.execute('SELECT 1 FROM "user" WHERE id = 1 FOR UPDATE')
    producer = TaskProducer(redis, queue=settings.queue)
    job_ids = [str((await producer.create_task(user_id=1, title=f"stuck {i}")).command_id) for i in range(JOBS)]

    async def all_claimed() -> bool:
        return {h for h in await redis.mget([in_progress_key(j) for j in job_ids])} == {victim_id.encode()}

    await wait_for(all_claimed, timeout=10, interval=0.01)
    rescuer = start_worker(**FAST)  # live, polling, and finding every due job held
    await wait_for(lambda: "worker started" in rescuer.log(), timeout=30)
    rescuer_id = next(json.loads(x) for x in rescuer.log().splitlines() if "worker started" in x)["worker_id"]
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert victim.proc.wait(5) == -signal.SIGKILL
    await lock.rollback()

    warning = await wait_for(lambda: _log_lines(scheduler_log, "claims waiting to expire"), timeout=10)
    assert (warning[0]["stopped_worker"], warning[0]["jobs"], warning[0]["level"]) == (victim_id, JOBS, "warning")

    async def applied() -> int:
        count = await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", [UUID(j) for j in job_ids]
        )
        return int(count) if count == JOBS else 0

    await wait_for(applied, timeout=CLAIM_TTL_S, interval=0.1)
    recovered_in = time.monotonic() - killed_at
    # Dead three intervals after its last beat, taken over at a claim within one more interval.
    assert recovered_in < 10.0, f"recovered in {recovered_in:.1f}s; the claims expire after {CLAIM_TTL_S}s"
    rows = await db.fetch(
        "SELECT worker_id, duplicates FROM processed_command WHERE command_id = ANY($1::uuid[])",
        [UUID(j) for j in job_ids],
    )
    assert {(r["worker_id"], r["duplicates"]) for r in rows} == {(rescuer_id, 0)}
    assert await db.fetchval("SELECT count(*) FROM task WHERE title LIKE 'stuck %'") == JOBS
    assert "took over the claims of a dead worker" in rescuer.log()
    picked = await wait_for(lambda: _log_lines(scheduler_log, "claims expired or taken over"), timeout=10)
    assert picked[0]["jobs"] == JOBS
    after = json.loads((await taskline(settings, "status", "--json")).stdout)
    assert after["depth"]["claims_waiting_to_expire"] == 0


async def test_claims_show_in_health_metrics_and_trace_before_the_worker_is_dead(
    settings: Settings, redis, db, users, start_worker
):
    """A job claimed by a killed worker (no other worker running) shows, once the worker has missed
    its beats, in `status` (text and --json, with when it runs again), `health` (text and --json),
    the fleet's metrics page, and `trace`, which says it waits on that worker (not for its task or
    user)."""
    slow = {**FAST, "TASKLINE_HEARTBEAT_INTERVAL": "3"}  # silent after 6 s, dead after 9 s
    worker = start_worker(**slow)
    await wait_for(lambda: "worker started" in worker.log(), timeout=30)
    lock = db.transaction()
    await lock.start()
    await db.execute('SELECT 1 FROM "user" WHERE id = 1 FOR UPDATE')
    job_id = str((await TaskProducer(redis, queue=settings.queue).create_task(user_id=1, title="held")).command_id)
    await wait_for(lambda: redis.exists(in_progress_key(job_id)), timeout=10, interval=0.01)
    worker.signal(signal.SIGKILL)
    assert worker.proc.wait(5) == -signal.SIGKILL
    await lock.rollback()

    async def status_shows_it() -> dict[str, object] | None:
        result = await taskline(settings, "status", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        return data if data["depth"]["claims_waiting_to_expire"] == 1 else None

    shown = await wait_for(status_shows_it, timeout=15, interval=0.2)
    (claim,) = shown["claims_waiting_to_expire"]  # type: ignore[index]
    assert claim["job_id"] == job_id
    assert claim["runs_again_in_s"] <= 12.0  # dead 9 s after its last beat, then one interval
    text = await taskline(settings, "status")
    assert f"job {job_id} claimed by" in text.stdout
    data = json.loads((await taskline(settings, "health", "--all", "--json")).stdout)
    (claim,) = data["claims_waiting_to_expire"]  # type: ignore[misc]
    assert claim["job_id"] == job_id
    text = await taskline(settings, "health", "--all")
    assert "wait to run again" in text.stdout + text.stderr
    metrics = await taskline(settings, "metrics")
    assert f'taskline_claims_waiting_to_expire{{queue="{settings.queue}"}} 1.0' in metrics.stdout
    trace = await taskline(settings, "trace", job_id, "--json")
    story = json.loads(trace.stdout)
    assert story["states"][0].startswith("waiting on a worker that stopped beating") or story["states"][0].startswith(
        "waiting for a dead worker's claim"
    ), story["states"]
    assert "exist" not in trace.stdout
