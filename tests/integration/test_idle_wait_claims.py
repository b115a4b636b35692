"""The worker's idle schedule hears of every claim (worker/arq_seam/overrides.py and idle_wait.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taskline_producer import CreateTask, TaskProducer

pytestmark = pytest.mark.integration


async def test_a_claim_that_fills_every_slot_counts_as_work_for_the_idle_schedule(settings, redis, db, users):
    """A claim that takes every free slot (any burst of max_jobs or more) is followed by a wait for
    a slot, not by an idle wait; it must still start the idle schedule over, or a stream in bursts
    waits up to the poll delay at each burst (issue 19: p99 1.5 s at 2,000 commands/s)."""
    from worker.arq_seam.wiring import build_worker

    commands = [
        CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=users[0], title=f"t{i}")
        for i in range(6)
    ]
    await TaskProducer(redis, queue=settings.queue).send_many(commands)
    worker = build_worker(settings, burst=True, poll_delay=0, handle_signals=False, max_jobs=2)
    noted: list[int] = []
    schedule = worker.seam.idle_wait
    note_claim = schedule.claimed

    def recording_claimed() -> None:
        noted.append(worker.seam.claimed)
        note_claim()

    schedule.claimed = recording_claimed
    try:
        await worker.async_run()
    finally:
        await worker.close()

    assert sum(noted) == 6, noted
    assert 2 in noted, f"no claim filled both slots: {noted}"
    assert schedule.last_claim is not None
    task_ids = [c.task_id for c in commands]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == 6
