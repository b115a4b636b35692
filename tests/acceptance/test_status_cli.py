"""`taskline status --watch --json` as a real process, following a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from taskline_producer import TaskProducer

from tests.conftest import wait_for, worker_env
from worker.config.settings import Settings

pytestmark = pytest.mark.acceptance


@pytest.fixture
def watch(settings: Settings, tmp_path: Path):
    """`taskline status --watch --json --every 0.3`, its output in a file (one object per refresh)."""
    out = tmp_path / "status.jsonl"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "taskline"), "status", "--watch", "--json", "--every", "0.3"],
            env=worker_env(settings, TASKLINE_HISTORY_SAMPLE_S="0.5"),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    yield out
    process.terminate()
    process.wait(10)


def _readings(path: Path) -> list[dict[str, object]]:
    readings = []
    for line in path.read_text().splitlines():
        try:
            readings.append(json.loads(line))
        except ValueError:
            continue
    return readings


async def test_status_watch_follows_the_worker_as_it_applies_commands(settings, redis, users, start_worker, watch):
    """Refresh after refresh, the worker's done count and the last minute's rate move."""
    worker = start_worker(TASKLINE_HEARTBEAT_INTERVAL="0.3")
    await wait_for(lambda: any(r["workers"] for r in _readings(watch)), timeout=30)
    started = time.monotonic()
    producer = TaskProducer(redis, queue=settings.queue)
    for n in range(30):
        await producer.create_task(user_id=1, title=f"watched {n}")

    def moved() -> bool:
        last = _readings(watch)[-1]
        done = sum(int(w["jobs_done"] or 0) for w in last["workers"])  # type: ignore[union-attr]
        return done >= 30 and (last["rates"]["last_minute"]["applied"] or 0) >= 30  # type: ignore[index]

    await wait_for(moved, timeout=30, interval=0.2)
    assert time.monotonic() - started < 30
    assert worker.proc.poll() is None
