"""The fleet's status without services: liveness from the key's age, claims waiting to expire,
the history samples and their rates and percentiles, and the status as a person reads it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from taskline_producer import keys
from taskline_producer.keys import heartbeat_key, workers_index_key

from worker.cli.status import render_status
from worker.observe.heartbeat import metrics_snapshot
from worker.observe.metrics import Metrics
from worker.tools.claims import ClaimWatch, stranded_claims
from worker.tools.fleet import read_heartbeats
from worker.tools.history import Counters, counters_of, quantile, read_history, summarise, take_sample

QUEUE = "q"


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = FakeRedis(server=FakeServer())
    yield client
    await client.aclose()


async def beat(redis: Any, worker_id: str, *, ttl_ms: int, age_ms: int, running: list[str], **extra: Any) -> None:
    """A heartbeat written `age_ms` ago with a time to live of `ttl_ms` (interval 1 s)."""
    document = {
        "worker_id": worker_id,
        "host": "h",
        "interval_s": 1.0,
        "key_ttl_ms": ttl_ms,
        "running_job_ids": running,
        **extra,
    }
    await redis.set(heartbeat_key(QUEUE, worker_id), json.dumps(document), px=ttl_ms - age_ms)
    await redis.zadd(workers_index_key(QUEUE), {worker_id: 1})


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))


async def test_a_worker_is_live_while_its_key_is_younger_than_three_intervals_whatever_its_time_to_live(redis):
    """Liveness is the key's age (the TTL it was written with minus its PTTL), not its existence:
    a crashed worker's kept heartbeat is reported as gone, with how long it has been silent."""
    await beat(redis, "fresh", ttl_ms=20_000, age_ms=1_000, running=[])
    await beat(redis, "crashed", ttl_ms=20_000, age_ms=7_000, running=["j1"])
    heartbeats = await read_heartbeats(redis, QUEUE)
    assert [d["worker_id"] for d in heartbeats.live] == ["fresh"]
    assert [d["worker_id"] for d in heartbeats.gone] == ["crashed"]
    assert 6.5 < heartbeats.gone[0]["age_s"] < 8.0


async def test_claims_of_a_worker_that_stopped_beating_are_found_from_the_queue_the_moment_they_are_taken(redis):
    """Every due job whose claim names a worker that missed its beats is stranded, listed in its
    heartbeat or not (claimed after its last beat): 'silent' after two intervals, runs again when
    it is judged dead (three) plus one interval; 'dead' after three, runs again within one
    interval; never later than the claim's PTTL. A claim of a worker on time, of another worker,
    arq's legacy '1', an expired claim, or a job not yet due is not."""
    await beat(redis, "dead", ttl_ms=20_000, age_ms=7_000, running=[])
    await beat(redis, "silent", ttl_ms=20_000, age_ms=2_500, running=[])
    await beat(redis, "on-time", ttl_ms=20_000, age_ms=500, running=[])
    await redis.zadd(QUEUE, {job: 1 for job in ("mine", "soon", "silent-job", "legacy", "taken", "expired", "fresh")})
    await redis.zadd(QUEUE, {"later": 2**52})
    await redis.set(keys.in_progress_key("mine"), "dead", px=9_000)
    await redis.set(keys.in_progress_key("soon"), "dead", px=500)
    await redis.set(keys.in_progress_key("silent-job"), "silent", px=20_000)
    await redis.set(keys.in_progress_key("legacy"), "1", px=8_000)
    await redis.set(keys.in_progress_key("taken"), "other-worker", px=15_000)
    await redis.set(keys.in_progress_key("fresh"), "on-time", px=15_000)
    await redis.set(keys.in_progress_key("later"), "dead", px=15_000)
    heartbeats = await read_heartbeats(redis, QUEUE)
    claims = await stranded_claims(redis, QUEUE, heartbeats)
    found = [(c.job_id, c.worker_id, c.worker_state) for c in claims]
    assert found == [("soon", "dead", "dead"), ("mine", "dead", "dead"), ("silent-job", "silent", "silent")]
    assert claims[0].runs_again_in_s <= 0.5
    assert claims[1].runs_again_in_s == 1.0
    assert 8.0 < claims[1].expires_in_s <= 9.0
    assert 1.4 < claims[2].runs_again_in_s <= 1.5  # dead in 0.5 s, then within one interval


async def test_the_claim_watch_logs_claims_waiting_and_then_their_pickup_and_keeps_the_gauge(redis):
    """One WARNING when a silent worker's claims start waiting; one INFO when they are gone, saying
    which job runs again on which worker and which is back in the queue."""
    metrics = Metrics()
    log = Log()
    watch = ClaimWatch(redis, QUEUE, log, metrics.claims_waiting)
    await beat(redis, "dead", ttl_ms=20_000, age_ms=7_000, running=[])
    await redis.zadd(QUEUE, {"a": 1, "b": 1})
    await redis.set(keys.in_progress_key("a"), "dead", px=9_000)
    await redis.set(keys.in_progress_key("b"), "dead", px=9_000)
    assert len(await watch.check()) == 2
    assert len(await watch.check()) == 2  # still waiting: no second line
    assert [(level, fields["jobs"]) for level, _, fields in log.lines] == [("warning", 2)]
    assert metrics.registry.get_sample_value("taskline_claims_waiting_to_expire") == 2
    # The claims expire; another worker claims "a", "b" is back in the queue.
    await redis.set(keys.in_progress_key("a"), "alive-worker", px=20_000)
    await redis.delete(keys.in_progress_key("b"))
    assert await watch.check() == []
    level, event, fields = log.lines[-1]
    assert (level, fields["running_again"], fields["queued"]) == ("info", 1, 1)
    assert fields["fates"] == {"a": "running on alive-worker", "b": "queued"}
    assert "expired" in event
    assert metrics.registry.get_sample_value("taskline_claims_waiting_to_expire") == 0


def _worker(worker_id: str, applied: float, latencies: list[float]) -> dict[str, Any]:
    metrics = Metrics()
    metrics.commands.labels("create_task", "applied").inc(applied)
    for seconds in latencies:
        metrics.latency.labels("create_task").observe(seconds)
    return {"worker_id": worker_id, "metrics": metrics_snapshot(metrics.registry)}


def test_counters_are_read_from_a_heartbeats_snapshot_and_a_restart_counts_from_zero() -> None:
    """The sample subtracts what the last one saw; a worker whose counters went down restarted."""
    counters = counters_of(_worker("w", 5, [0.02, 0.3]))
    assert (counters.applied, counters.latency["0.025"], counters.latency["+Inf"]) == (5.0, 1.0, 2.0)
    assert counters.minus(Counters(applied=2)).applied == 3.0
    assert counters.minus(Counters(applied=9)).applied == 5.0


def test_latency_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = {"0.1": 50.0, "0.2": 100.0, "+Inf": 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.75) == pytest.approx(0.15)
    assert quantile({"0.1": 0.0, "+Inf": 0.0}, 0.5) is None
    assert quantile({"0.1": 0.0, "+Inf": 4.0}, 0.5) == 0.1  # all above the last bound: that bound


async def test_one_sample_per_period_holds_the_fleets_counts_since_the_previous_one(redis):
    """The first sample only records the baseline; the next holds the difference, summed over
    workers (a new worker counts in full); a second writer in the same period writes nothing."""
    assert await take_sample(redis, QUEUE, [_worker("a", 10, [])], every_s=10, now=1000.0) is None
    sample = await take_sample(
        redis, QUEUE, [_worker("a", 25, [0.004] * 15), _worker("b", 5, [])], every_s=10, now=1010.0, gauges={"ready": 3}
    )
    assert sample is not None
    assert (sample["applied"], sample["dt"], sample["ready"]) == (20.0, 10.0, 3)
    assert await take_sample(redis, QUEUE, [_worker("a", 99, [])], every_s=10, now=1015.0) is None
    history = await read_history(redis, QUEUE, since_s=60, now=1020.0)
    window = summarise(history)
    assert window.per_second == 2.0
    assert window.latency_quantiles["p50"] is not None
    assert 0.0025 < window.latency_quantiles["p50"] <= 0.005


def test_the_status_names_the_claims_waiting_and_the_workers() -> None:
    """What a person reads: the queue line, each waiting claim, the rates, a row per worker."""
    window = {
        "commands_per_s": 2.5,
        "applied": 150.0,
        "duplicates": 0.0,
        "dead_lettered": 1.0,
        "retried": 0.0,
        "latency_s": {"p50": 0.004, "p95": 0.02, "p99": 1.5},
    }
    worker = {
        "worker_id": "h:1:a",
        "host": "h",
        "pid": 1,
        "version": "0.1.0",
        "jobs_running": 2,
        "jobs_done": 150,
        "jobs_failed": 0,
        "last_beat_age_s": 1.2,
        "state": "ready",
    }
    data = {
        "queue": "q",
        "depth": {"ready": 4, "deferred": 1, "in_progress": 2, "claims_waiting_to_expire": 1},
        "claims_waiting_to_expire": [
            {
                "job_id": "j1",
                "worker_id": "h:2:b",
                "host": "h",
                "expires_in_s": 12.5,
                "silent_for_s": 9.0,
                "worker_state": "dead",
                "runs_again_in_s": 1.0,
            }
        ],
        "pause": {"by": "ops@example", "at": "2026-12-07T22:00:00+00:00"},
        "rates": {"last_minute": window, "last_hour": window},
        "workers": [worker],
        "stopped_workers": [{"worker_id": "h:2:b", "host": "h", "silent_for_s": 9.0}],
        "schedulers": [],
        "last_purge": None,
        "dead_letters": {"total": 1, "since": "24 hours", "groups": []},
    }
    lines = render_status(data, 80)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = " ".join(" ".join(lines).split())
    assert "4 ready, 1 deferred or retrying, 2 in progress, 1 claims waiting to expire" in text
    assert "job j1 claimed by h:2:b" in text
    assert "(dead, silent 9s), runs again within 1.0s" in text
    assert "claiming paused (by ops@example at 2026-12-07T22:00:00)" in text
    assert "h:1:a" in text
    assert "stopped beating" in text
    assert "4.0 ms" in text
    assert "1.50 s" in text


def test_the_status_says_how_many_jobs_wait_their_turn_and_who_is_held_back() -> None:
    """With fair turns holding jobs: the queue line counts them, then a line per held key (its
    jobs, when it goes again) and per large lane; the limits themselves are left to `fairness show`."""
    window = {
        "commands_per_s": 0.0,
        "applied": 0.0,
        "duplicates": 0.0,
        "dead_lettered": 0.0,
        "retried": 0.0,
        "latency_s": {"p50": None, "p95": None, "p99": None},
    }
    data = {
        "queue": "q",
        "depth": {"ready": 0, "deferred": 0, "in_progress": 0, "claims_waiting_to_expire": 0, "in_fair_lanes": 12},
        "claims_waiting_to_expire": [],
        "pause": None,
        "fairness": {
            "keys_waiting": 1,
            "jobs_waiting": 12,
            "held_count": 1,
            "held": [{"key": "tenant:a", "waiting": 2, "until_ms": 0, "until": "1970-01-01T00:00:00+00:00"}],
            "largest": [{"key": "user:9", "waiting": 10, "until_ms": 0}],
            "limits": {"tenant:a": {"rate": 5.0, "burst": 5.0, "weight": 1.0}},
        },
        "rates": {"last_minute": window, "last_hour": window},
        "workers": [],
        "stopped_workers": [],
        "schedulers": [],
        "last_purge": None,
        "dead_letters": None,
    }
    text = "\n".join(render_status(data, 160))
    assert "0 in progress, 12 waiting their turn (fair lanes), 0 claims waiting to expire" in text
    assert "fair turns: 1 key(s) waiting their turn, 1 held by a rate limit" in text
    assert "held: tenant:a: 2 job(s) waiting, next in 0.0s" in text
    assert "waiting: user:9: 10 job(s)" in text
    assert "limit:" not in text
