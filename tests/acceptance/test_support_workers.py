"""tests/support/workers.py knows a started worker by its own heartbeat: what the benchmark waits for
before its clock starts, and what bench.purge waits for before its first round."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.workers import wait_for_heartbeats

pytestmark = pytest.mark.acceptance


async def test_a_started_worker_is_found_by_the_process_id_in_its_heartbeat(settings, redis, start_worker):
    """Waiting on a real worker process returns its heartbeat document: its pid, this queue."""
    worker = start_worker()

    def running() -> None:
        assert worker.proc.poll() is None, worker.log()

    found = await wait_for_heartbeats(redis, settings.queue, [worker.proc.pid], timeout=30, check=running)
    assert found[worker.proc.pid]["pid"] == worker.proc.pid
    assert found[worker.proc.pid]["queue"] == settings.queue


async def test_a_process_that_never_beats_is_reported_after_the_timeout(settings, redis, start_worker):
    """A pid without a heartbeat on the queue (here: a worker's, but asked on another queue) ends
    the wait with a TimeoutError naming the queue and the pid, once the timeout is over."""
    worker = start_worker()
    await wait_for_heartbeats(redis, settings.queue, [worker.proc.pid], timeout=30)
    other = settings.queue + ":other"
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"{re.escape(other)}.*\[{worker.proc.pid}\]"):
        await wait_for_heartbeats(redis, other, [worker.proc.pid], timeout=0.5)
    assert time.monotonic() - began >= 0.5
