"""The claim script against real Redis: what arq's claim and run_job opening did, in one call."""

from __future__ import annotations

import pytest
from taskline_producer.wire import epoch_ms

from worker.arq_seam.claim import CLAIM_SCRIPT, Claimed, parse_claimed

pytestmark = pytest.mark.integration


async def _claim(redis, queue: str, *, limit: int, fetch: bool) -> list[Claimed]:
    reply = await redis.eval(CLAIM_SCRIPT, 1, queue, epoch_ms(), 60_000, limit, 50, int(fetch))
    return parse_claimed(reply, fetched=fetch)


async def test_claims_due_jobs_in_order_fetches_them_and_counts_their_tries(redis, queue):
    now = epoch_ms()
    await redis.zadd(queue, {"a": now - 2, "b": now - 1, "gone": now, "later": now + 60_000})
    await redis.set("arq:job:a", b"payload-a")
    await redis.set("arq:job:b", b"payload-b")
    await redis.set("arq:retry:b", 2)  # b ran twice before
    await redis.set("arq:in-progress:held", 1)
    await redis.zadd(queue, {"held": now - 3})

    claimed = await _claim(redis, queue, limit=10, fetch=True)

    assert claimed == [
        Claimed("a", now - 2, b"payload-a", 1),
        Claimed("b", now - 1, b"payload-b", 3),
        Claimed("gone", now, None, 1),  # its key expired: arq's run_job dead-letters it
    ]
    for job_id in ("a", "b", "gone"):
        assert 0 < await redis.pttl(f"arq:in-progress:{job_id}") <= 60_000
        assert 88_000 < await redis.ttl(f"arq:retry:{job_id}") <= 88_400
    assert await redis.exists("arq:retry:held", "arq:retry:later") == 0
    # Claimed jobs are not claimed again while their in-progress key lives.
    assert await _claim(redis, queue, limit=10, fetch=True) == []


async def test_claims_no_more_than_the_free_slots(redis, queue):
    now = epoch_ms()
    await redis.zadd(queue, {f"job{n}": now - 10 + n for n in range(5)})

    first = await _claim(redis, queue, limit=2, fetch=True)
    second = await _claim(redis, queue, limit=2, fetch=False)

    assert [job.job_id for job in first] == ["job0", "job1"]
    assert second == [Claimed("job2", now - 8, None, None), Claimed("job3", now - 7, None, None)]
    assert await redis.exists("arq:retry:job2") == 0  # without fetching, arq's run_job counts the try
