"""Fair turns against a real Redis: the producer's fair enqueue script, then the claim script,
asserting the ORDER in which jobs are claimed (never timings)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from taskline_producer import TaskProducer, keys
from taskline_producer.contract import CreateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms, job_of_command

from worker.arq_seam.claim import CLAIM_SCRIPT, ClaimReply, claim_arguments, claim_keys, parse_claimed
from worker.tools.fair_limits import FairLimit, set_limit

pytestmark = pytest.mark.integration


def _create(user_id: int) -> CreateTask:
    return CreateTask(
        command_id=uuid.uuid4(), issued_at=datetime.now(UTC), task_id=uuid.uuid4(), user_id=user_id, title="t"
    )


async def _claim(
    redis,
    queue: str,
    *,
    limit: int,
    now_ms: int | None = None,
    worker_id: str = "w-1",
    per_key: int = 1_000_000,
    held: dict[str, int] | None = None,
) -> ClaimReply:
    arguments = claim_arguments(
        now_ms or epoch_ms(),
        60_000,
        worker_id,
        limit,
        50,
        1 << 20,
        heartbeat_prefix=keys.heartbeat_key(queue, ""),
        per_key=per_key,
        held_by_key=held,
    )
    return parse_claimed(await redis.eval(CLAIM_SCRIPT, 7, *claim_keys(queue), *arguments))


async def _finish(redis, queue: str, reply: ClaimReply) -> None:
    """What a worker's bookkeeping does when the claimed jobs end: they leave the queue."""
    for job in reply.claimed:
        await redis.zrem(queue, job.job_id)
        await redis.delete(keys.in_progress_key(job.job_id), keys.job_key(job.job_id))


async def _users_in_claim_order(redis, queue: str, owner: dict[str, int], *, limit: int = 1) -> list[int]:
    """Claim (and finish) until nothing is left; the user of each job, in the order claimed."""
    order: list[int] = []
    for _ in range(10_000):
        reply = await _claim(redis, queue, limit=limit)
        if not reply.claimed:
            break
        order.extend(owner[job.job_id] for job in reply.claimed)
        await _finish(redis, queue, reply)
    return order


async def test_a_flood_from_one_user_does_not_hold_up_the_others(redis, queue):
    """User 1 sends 200 commands, then users 2 and 3 send 3 each: claiming one job at a time, the
    six later commands are claimed within the first dozen claims, alternating with user 1's, and
    every job is claimed exactly once."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    flood = [_create(1) for _ in range(200)]
    others = [_create(2) for _ in range(3)] + [_create(3) for _ in range(3)]
    await producer.send_many(flood)
    await producer.send_many(others)
    owner = {str(c.command_id): c.user_id for c in flood + others}
    assert await redis.zcard(queue) == 0  # all in their lanes, none in the queue yet

    order = await _users_in_claim_order(redis, queue, owner)

    assert len(order) == 206
    assert sorted(order) == sorted(owner.values())
    assert order[:9] == [1, 2, 3, 1, 2, 3, 1, 2, 3]
    assert await redis.exists(keys.fair_turns_key(queue)) == 0


async def test_a_bulk_job_takes_as_many_turns_as_it_has_commands(redis, queue):
    """User 1 sends two bulk jobs of 5 commands, user 2 then sends 6 single commands: after user
    1's first bulk, user 2 gets 5 turns before user 1's second bulk."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    first = await producer.send_bulk([_create(1) for _ in range(5)])
    second = await producer.send_bulk([_create(1) for _ in range(5)])
    singles = [_create(2) for _ in range(6)]
    await producer.send_many(singles)
    owner = {first.job_id: 1, second.job_id: 1} | {str(c.command_id): 2 for c in singles}

    order = await _users_in_claim_order(redis, queue, owner)

    assert order == [1, 2, 2, 2, 2, 2, 1, 2]


async def test_a_heavier_key_gets_more_turns(redis, queue):
    """With weight 2, tenant:big gets two turns for each of tenant:small's."""
    await set_limit(redis, queue, "tenant:big", FairLimit(rate=0, burst=1, weight=2))
    producer = TaskProducer(redis, queue=queue, fair=True)
    big = [_create(1) for _ in range(8)]
    small = [_create(2) for _ in range(4)]
    await producer.send_many(big, fairness_key="tenant:big")
    await producer.send_many(small, fairness_key="tenant:small")
    owner = {str(c.command_id): c.user_id for c in big + small}

    order = await _users_in_claim_order(redis, queue, owner)

    assert order[:9] == [1, 2, 1, 1, 2, 1, 1, 2, 1]


async def test_a_rate_limit_defers_jobs_and_never_drops_them(redis, queue):
    """User 1 limited to 1 command/s with a burst of 2 sends 5 commands: two are claimed at once,
    the key is then held (its jobs stay in its lane, the reply says when it may go again) while
    user 2's job is claimed; as time passes the rest are claimed, one per second, all of them."""
    await set_limit(redis, queue, "user:1", FairLimit(rate=1, burst=2, weight=1))
    producer = TaskProducer(redis, queue=queue, fair=True)
    limited = [_create(1) for _ in range(5)]
    await producer.send_many(limited)
    late = _create(2)
    await producer.send(late)
    now = epoch_ms()

    first = await _claim(redis, queue, limit=10, now_ms=now)

    claimed = [job.job_id for job in first.claimed]
    assert claimed == [str(limited[0].command_id), str(late.command_id), str(limited[1].command_id)]
    assert first.keys_waiting == 1
    assert now < first.first_release_ms <= now + 1000
    assert await redis.llen(keys.fair_lane_key(queue, "user:1")) == 3
    assert await redis.zscore(keys.fair_held_key(queue), "user:1") == first.first_release_ms
    assert (await _claim(redis, queue, limit=10, now_ms=now + 10)).claimed == []

    later = []
    for second in range(1, 4):
        reply = await _claim(redis, queue, limit=10, now_ms=now + second * 1000 + 5)
        later.extend(job.job_id for job in reply.claimed)
    assert later == [str(c.command_id) for c in limited[2:]]
    assert await redis.exists(keys.fair_lane_key(queue, "user:1"), keys.fair_turns_key(queue)) == 0


async def test_a_job_without_a_fairness_key_is_claimed_first(redis, queue):
    """During a flood in the lanes, a job enqueued with the plain script (arq's layout, no key)
    is claimed by the next claim, before the flood's next job."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    await producer.send_many([_create(1) for _ in range(50)])
    plain = _create(2)
    now = epoch_ms()
    await redis.eval(
        ENQUEUE_SCRIPT, 1, queue, now, DEFAULT_JOB_TTL_MS, str(plain.command_id), job_of_command(plain, now)
    )

    reply = await _claim(redis, queue, limit=1)

    assert [job.job_id for job in reply.claimed] == [str(plain.command_id)]
    assert reply.keys_waiting == 1


async def test_claimed_lane_jobs_are_in_the_queue_with_their_claim_and_payload(redis, queue):
    """A job taken from a lane is in the queue with its enqueue score, claimed by the worker, and
    comes back with its payload and try number, like any claimed job."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    command = _create(4)
    await producer.send(command)
    job_id = str(command.command_id)

    reply = await _claim(redis, queue, limit=5, worker_id="w-3")

    (job,) = reply.claimed
    assert (job.job_id, job.job_try) == (job_id, 1)
    assert json.loads(job.payload)["a"][0]["command_id"] == job_id
    assert await redis.zscore(queue, job_id) == job.score
    assert await redis.get(keys.in_progress_key(job_id)) == b"w-3"
    assert reply.keys_waiting == 0


async def test_nothing_leaves_a_lane_while_the_queue_is_paused(redis, queue):
    """While paused, lanes are not touched; after resume their jobs are claimed."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    await producer.send(_create(5))
    await redis.set(keys.paused_key(queue), json.dumps({"by": "test", "at": "now"}))

    assert (await _claim(redis, queue, limit=5)).claimed == []
    assert await redis.llen(keys.fair_lane_key(queue, "user:5")) == 1
    await redis.delete(keys.paused_key(queue))
    assert len((await _claim(redis, queue, limit=5)).claimed) == 1


async def test_a_producer_made_unfair_sends_straight_into_the_queue(redis, queue):
    """fair=False: the job goes into the queue itself, as arq's client would put it."""
    producer = TaskProducer(redis, queue=queue, fair=False)
    command = _create(6)
    await producer.send(command)

    assert await redis.zscore(queue, str(command.command_id)) is not None
    assert await redis.exists(keys.fair_turns_key(queue)) == 0


async def test_a_duplicate_is_refused_whether_its_first_copy_waits_in_a_lane_or_not(redis, queue):
    """The duplicate check is unchanged: a second copy of a command still in its lane is refused."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    command = _create(7)
    assert (await producer.send(command)).queued is True
    assert (await producer.send(command)).queued is False
    assert await redis.llen(keys.fair_lane_key(queue, "user:7")) == 1


async def test_a_key_takes_no_more_from_its_lane_than_it_may_hold_in_the_worker(redis, queue):
    """With 50 free slots and room for 150 commands per key, a claim takes user 1's first bulk job
    of 100, user 2's five single commands (their turns come first), then user 1's second bulk (it
    overshoots: a job is never split), and no more of user 1's; the reply names each job's key
    and cost. While the worker holds 150 of user 1's commands, the next claim takes a job without
    a key and user 3's, but nothing of user 1's."""
    producer = TaskProducer(redis, queue=queue, fair=True)
    bulks = [await producer.send_bulk([_create(1) for _ in range(100)]) for _ in range(3)]
    singles = [_create(2) for _ in range(5)]
    await producer.send_many(singles)

    reply = await _claim(redis, queue, limit=50, per_key=150)

    expected = [bulks[0].job_id, *(str(c.command_id) for c in singles), bulks[1].job_id]
    assert [job.job_id for job in reply.claimed] == expected
    assert [reply.lane_costs[job_id] for job_id in expected] == [("user:1", 100)] + [("user:2", 1)] * 5 + [
        ("user:1", 100)
    ]
    assert await redis.llen(keys.fair_lane_key(queue, "user:1")) == 1

    plain, third = _create(3), _create(3)
    now = epoch_ms()
    await redis.eval(
        ENQUEUE_SCRIPT, 1, queue, now, DEFAULT_JOB_TTL_MS, str(plain.command_id), job_of_command(plain, now)
    )
    await producer.send(third)
    later = await _claim(redis, queue, limit=50, per_key=150, held={"user:1": 150})
    assert [job.job_id for job in later.claimed] == [str(plain.command_id), str(third.command_id)]
    assert later.lane_costs == {str(third.command_id): ("user:3", 1)}
    assert await redis.llen(keys.fair_lane_key(queue, "user:1")) == 1
