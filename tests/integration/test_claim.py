"""The claim script against a real Redis: what it claims, fetches and counts."""

from __future__ import annotations

import json

import pytest
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from worker.arq_seam.claim import (
    CLAIM_SCRIPT,
    OVERSIZED_HEAD_BYTES,
    Claimed,
    ClaimReply,
    claim_arguments,
    claim_keys,
    parse_claimed,
)

pytestmark = pytest.mark.integration


async def _reply(
    redis,
    queue: str,
    *,
    limit: int,
    scan: int = 50,
    worker_id: str = "w-1",
    take_over: bool = False,
    max_bytes: int = 1 << 20,
) -> ClaimReply:
    arguments = claim_arguments(
        epoch_ms(),
        60_000,
        worker_id,
        limit,
        scan,
        max_bytes,
        take_over=take_over,
        heartbeat_prefix=keys.heartbeat_key(queue, ""),
    )
    return parse_claimed(await redis.eval(CLAIM_SCRIPT, 7, *claim_keys(queue), *arguments))


async def _claim(
    redis, queue: str, *, limit: int, scan: int = 50, worker_id: str = "w-1", max_bytes: int = 1 << 20
) -> list[Claimed]:
    return (await _reply(redis, queue, limit=limit, scan=scan, worker_id=worker_id, max_bytes=max_bytes)).claimed


async def _beat(redis, queue: str, worker_id: str, *, age_s: float, interval_s: float = 1.0) -> None:
    """A heartbeat document of `worker_id` written `age_s` ago (its key's TTL says so)."""
    ttl_ms = 60_000
    document = {"worker_id": worker_id, "interval_s": interval_s, "key_ttl_ms": ttl_ms}
    await redis.set(keys.heartbeat_key(queue, worker_id), json.dumps(document), px=ttl_ms - int(age_s * 1000))


async def test_claims_due_unclaimed_jobs_fetches_them_and_counts_their_tries(redis, queue):
    """Only due and unclaimed jobs are claimed, in queue order; each comes with its payload and
    its try number, and its claim names the worker."""
    now = epoch_ms()
    await redis.zadd(queue, {"a": now - 2, "b": now - 1, "later": now + 60_000, "held": now - 3})
    await redis.set(keys.job_key("a"), b"payload-a")
    await redis.set(keys.job_key("b"), b"payload-b")
    await redis.set(keys.retry_key("b"), 2)  # b ran twice before
    await redis.set(keys.in_progress_key("held"), "another-worker")

    claimed = await _claim(redis, queue, limit=10, worker_id="w-7")

    expected = [("a", b"payload-a", 1), ("b", b"payload-b", 3)]
    assert [(job.job_id, job.payload, job.job_try) for job in claimed] == expected
    assert [job.score for job in claimed] == [now - 2, now - 1]
    for job_id in ("a", "b"):
        assert await redis.get(keys.in_progress_key(job_id)) == b"w-7"
        assert 0 < await redis.pttl(keys.in_progress_key(job_id)) <= 60_000
        assert 88_000 < await redis.ttl(keys.retry_key(job_id)) <= keys.RETRY_KEY_TTL_S
    assert await redis.get(keys.in_progress_key("held")) == b"another-worker"
    assert await redis.exists(keys.retry_key("held"), keys.retry_key("later"), keys.in_progress_key("later")) == 0


async def test_claims_at_most_the_free_slots_and_reports_an_expired_payload(redis, queue):
    """With two free slots only two jobs are claimed; a job whose key expired comes back with no
    payload (the runner dead-letters it) rather than being skipped."""
    now = epoch_ms()
    await redis.zadd(queue, {"x": now - 3, "y": now - 2, "z": now - 1})
    await redis.set(keys.job_key("y"), b"payload-y")

    claimed = await _claim(redis, queue, limit=2)

    assert [(job.job_id, job.payload) for job in claimed] == [("x", None), ("y", b"payload-y")]
    assert await redis.exists(keys.in_progress_key("z")) == 0


async def test_looks_at_no_more_due_jobs_than_the_scan_limit(redis, queue):
    """With the first two due jobs held elsewhere and a scan of two, nothing is claimed."""
    now = epoch_ms()
    await redis.zadd(queue, {"p": now - 3, "q": now - 2, "r": now - 1})
    await redis.set(keys.in_progress_key("p"), "w-2")
    await redis.set(keys.in_progress_key("q"), "w-2")

    assert await _claim(redis, queue, limit=5, scan=2) == []
    assert [job.job_id for job in await _claim(redis, queue, limit=5, scan=3)] == ["r"]


async def test_takes_over_the_claims_of_a_dead_worker_only_when_asked(redis, queue):
    """A due job claimed by a worker whose heartbeat is older than three intervals is claimed at
    once by a claim that asks for take-overs (and reported with the dead worker's id); a claim
    that does not ask leaves it, as it leaves the claims of a live worker, however old the claim,
    of a worker with no heartbeat at all, and arq's legacy '1'."""
    now = epoch_ms()
    await redis.zadd(
        queue,
        {
            f"{queue}:dead-job": now - 5,
            f"{queue}:live-job": now - 4,
            f"{queue}:unknown-job": now - 3,
            f"{queue}:legacy-job": now - 2,
        },
    )
    await redis.set(keys.job_key(f"{queue}:dead-job"), b"payload")
    await redis.set(keys.retry_key(f"{queue}:dead-job"), 1)
    await _beat(redis, queue, "dead-w", age_s=3.5)
    await _beat(redis, queue, "live-w", age_s=2.5)  # late, but not three intervals
    await redis.set(keys.in_progress_key(f"{queue}:dead-job"), "dead-w", px=25_000)
    await redis.set(keys.in_progress_key(f"{queue}:live-job"), "live-w", px=1_000)  # a long job: its claim is old
    await redis.set(keys.in_progress_key(f"{queue}:unknown-job"), "never-beat-w", px=25_000)
    await redis.set(keys.in_progress_key(f"{queue}:legacy-job"), "1", px=25_000)

    assert (await _reply(redis, queue, limit=10, worker_id="w-9")).claimed == []
    reply = await _reply(redis, queue, limit=10, worker_id="w-9", take_over=True)

    assert [(job.job_id, job.payload, job.job_try) for job in reply.claimed] == [(f"{queue}:dead-job", b"payload", 2)]
    assert reply.taken_over == {f"{queue}:dead-job": "dead-w"}
    assert await redis.get(keys.in_progress_key(f"{queue}:dead-job")) == b"w-9"
    assert 59_000 < await redis.pttl(keys.in_progress_key(f"{queue}:dead-job")) <= 60_000
    for job_id, holder in (
        (f"{queue}:live-job", b"live-w"),
        (f"{queue}:unknown-job", b"never-beat-w"),
        (f"{queue}:legacy-job", b"1"),
    ):
        assert await redis.get(keys.in_progress_key(job_id)) == holder


async def test_claims_nothing_while_the_queue_is_paused(redis, queue):
    """While `<queue>:paused` exists the script claims nothing, touches no job and says paused;
    once it is gone the same jobs are claimed."""
    now, job_id = epoch_ms(), f"{queue}:paused-job"
    await redis.zadd(queue, {job_id: now - 1})
    await redis.set(keys.paused_key(queue), json.dumps({"by": "test", "at": "now"}))

    paused = await _reply(redis, queue, limit=5, take_over=True)

    assert paused == ClaimReply(True, [], {})
    assert await redis.exists(keys.in_progress_key(job_id), keys.retry_key(job_id)) == 0
    await redis.delete(keys.paused_key(queue))
    resumed = await _reply(redis, queue, limit=5)
    assert resumed.paused is False
    assert [job.job_id for job in resumed.claimed] == [job_id]


async def test_an_oversized_job_is_measured_not_read(redis, queue):
    """A job value larger than `max_bytes` comes back as its size and its first bytes only (STRLEN
    in Redis, then GETRANGE): the worker never receives the whole value. One at the limit is read."""
    now = epoch_ms()
    await redis.zadd(queue, {"big": now - 2, "fits": now - 1})
    await redis.set(keys.job_key("big"), b"{" + b"x" * 200_000)
    await redis.set(keys.job_key("fits"), b"y" * 1000)

    claimed = await _claim(redis, queue, limit=5, max_bytes=1000)

    big, fits = claimed
    assert (big.job_id, big.oversized, big.job_try) == ("big", 200_001, 1)
    assert big.payload == (b"{" + b"x" * 200_000)[:OVERSIZED_HEAD_BYTES]
    assert (fits.job_id, fits.oversized, fits.payload) == ("fits", 0, b"y" * 1000)
