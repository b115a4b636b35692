"""The relay's two Redis round trips on the real Redis: its enqueue script against the producers'
one (the same replies and writes for new jobs, duplicates and jobs whose bytes look like the
packing itself), and the states it reads back for every kind of published command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import ENQUEUE_SCRIPT

from worker.relay.redis_side import PACKED_ENQUEUE_SCRIPT, pack_jobs, publish_jobs, read_states

pytestmark = pytest.mark.integration

NOW_MS = 1_700_000_000_000
TTL_MS = 60_000
JOBS = [
    ("new", b'{"f":"create_task"}'),
    ("queued", b'{"f":"update_task"}'),
    ("finished", b'{"f":"complete_task"}'),
    ("twice", b"first"),
    ("twice", b"second"),
    ("tricky", "12:ab:3:x\n\u00e9\u2603 \x00 done".encode()),
    ("empty", b""),
]


async def _run(redis: Redis, queue: str, packed: bool) -> dict[str, Any]:
    """Arrange the same Redis state under fresh ids, run one script, read back what it wrote."""
    ids = {name: f"{name}-{uuid4()}" for name, _ in JOBS}
    await redis.set(keys.job_key(ids["queued"]), b"already queued")
    await redis.set(keys.result_key(ids["finished"]), b"already done")
    jobs = [(ids[name], job) for name, job in JOBS]
    if packed:
        reply = await redis.eval(PACKED_ENQUEUE_SCRIPT, 1, queue, NOW_MS, TTL_MS, pack_jobs(jobs))  # type: ignore[misc]
    else:
        args: list[Any] = [NOW_MS, TTL_MS]
        for job_id, job in jobs:
            args += [job_id, job]
        reply = await redis.eval(ENQUEUE_SCRIPT, 1, queue, *args)  # type: ignore[misc]
    by_id = {job_id: name for name, job_id in ids.items()}
    written = {}
    for name, job_id in ids.items():
        ttl = await redis.pttl(keys.job_key(job_id))
        written[name] = (await redis.get(keys.job_key(job_id)), 0 < ttl <= TTL_MS or ttl)
    queued = {by_id[member.decode()]: score for member, score in await redis.zrange(queue, 0, -1, withscores=True)}
    return {
        "reply": reply,
        "written": written,
        "queued": queued,
        "wake": await redis.lrange(keys.wake_key(queue), 0, -1),
    }


async def test_the_packed_script_does_what_the_producers_enqueue_script_does(redis: Redis, queue: str) -> None:
    """Same replies (1 queued, 0 duplicate), same job values and TTLs, same queue members and
    scores, same wake-up token, for every kind of job."""
    producers = await _run(redis, f"{queue}:producers", packed=False)
    relay = await _run(redis, f"{queue}:relay", packed=True)
    assert relay == producers
    assert producers["reply"] == [1, 0, 0, 1, 0, 1, 1]
    assert producers["written"]["tricky"][0] == JOBS[5][1]
    assert producers["wake"] == [b"1"]


async def test_publish_jobs_counts_what_was_new_across_script_chunks(redis: Redis, queue: str) -> None:
    """More jobs than one EVAL carries: every one is queued once, and a second publication of the
    same jobs is refused as duplicates."""
    jobs = [(str(uuid4()), b'{"n":%d}' % n) for n in range(1203)]
    assert await publish_jobs(redis, queue, TTL_MS, NOW_MS, jobs) == 1203
    assert await redis.zcard(queue) == 1203
    assert await redis.get(keys.job_key(jobs[1202][0])) == b'{"n":1202}'
    assert await publish_jobs(redis, queue, TTL_MS, NOW_MS, jobs) == 0


async def test_read_states_tells_every_kind_of_published_command(redis: Redis) -> None:
    """Final outcomes win; without one, a claimed job is running, a job is queued, and nothing at
    all (even a `retrying` outcome whose job is gone) is unknown."""

    async def outcome(command_id: str, state: str) -> None:
        document = {"command_id": command_id, "state": state, "reason": "", "at": datetime.now(UTC).isoformat()}
        await redis.set(keys.outcome_key(command_id), json.dumps(document))

    ids = {
        name: str(uuid4()) for name in ("applied", "duplicate", "dead", "running", "queued", "retry", "lost", "gone")
    }
    await outcome(ids["applied"], "applied")
    await redis.set(keys.job_key(ids["applied"]), b"still there")  # a final outcome wins
    await outcome(ids["duplicate"], "duplicate")
    await outcome(ids["dead"], "dead_letter")
    await redis.set(keys.job_key(ids["running"]), b"{}")
    await redis.set(keys.in_progress_key(ids["running"]), b"1")
    await redis.set(keys.job_key(ids["queued"]), b"{}")
    await outcome(ids["retry"], "retrying")
    await redis.set(keys.job_key(ids["retry"]), b"{}")
    await outcome(ids["lost"], "retrying")  # a FLUSHALL took its job between two tries
    order = ["applied", "duplicate", "dead", "running", "queued", "retry", "lost", "gone"]
    states = await read_states(redis, [ids[name] for name in order])
    assert states == ["applied", "duplicate", "dead_letter", "running", "queued", "queued", "unknown", "unknown"]
    assert await read_states(redis, [ids["applied"], ids["dead"]]) == ["applied", "dead_letter"]
    assert await read_states(redis, []) == []
