"""The history per function and its kept length (TASKLINE_HISTORY_KEEP): samples count each
function's commands, the page's rates table and plots read them, and old samples are trimmed
at the length the operator set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from taskline_producer import keys

from worker.config.settings import Settings
from worker.observe.heartbeat import metrics_snapshot
from worker.observe.metrics import Metrics
from worker.tools.history import read_history, summarise, take_sample
from worker.web.plots import KeptHistory, charts, function_rates

QUEUE = "taskline:queue"


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = FakeRedis(server=FakeServer())
    yield client
    await client.aclose()


def _worker(counts: dict[str, int]) -> dict[str, Any]:
    metrics = Metrics()
    for function, n in counts.items():
        metrics.commands.labels(function, "applied").inc(n)
    return {"worker_id": "w", "metrics": metrics_snapshot(metrics.registry)}


async def test_samples_count_commands_per_function_and_the_rates_table_divides_by_time(redis):
    """30 create_task and 10 update_task in 10 s: 3.0/s and 1.0/s, busiest first, in every window."""
    await take_sample(redis, QUEUE, [_worker({"create_task": 0, "update_task": 0})], every_s=10, now=1000.0)
    await take_sample(redis, QUEUE, [_worker({"create_task": 30, "update_task": 10})], every_s=10, now=1010.0)
    samples = await read_history(redis, QUEUE, since_s=60, now=1010.0)
    assert summarise(samples).as_dict()["by_function"] == {
        "create_task": {"commands": 30.0, "per_s": 3.0},
        "update_task": {"commands": 10.0, "per_s": 1.0},
    }
    rows = function_rates(samples, now=1010.0)
    assert [(r["function"], r["minute"], r["hour"], r["kept"]) for r in rows] == [
        ("create_task", 3.0, 3.0, 3.0),
        ("update_task", 1.0, 1.0, 1.0),
    ]
    drawn = charts(samples, keep_s=10_800, now=1010.0)
    assert len(drawn) == 4
    assert "by function" in drawn[3]
    assert "update_task" in drawn[3]


async def test_samples_older_than_the_kept_length_are_trimmed(redis):
    """With a kept length of 600 s, a sample 700 s old is gone after the next sample, and the
    web process's incremental copy drops it too."""
    await take_sample(redis, QUEUE, [_worker({"create_task": 0})], every_s=10, now=1000.0, keep_s=600)
    await take_sample(redis, QUEUE, [_worker({"create_task": 5})], every_s=10, now=1010.0, keep_s=600)
    kept = KeptHistory(keep_s=600)
    assert len(await kept.refresh(redis, QUEUE, now=1020.0)) == 1
    await take_sample(redis, QUEUE, [_worker({"create_task": 9})], every_s=10, now=1300.0, keep_s=600)
    assert len(await kept.refresh(redis, QUEUE, now=1300.0)) == 2  # only the new one was read
    await take_sample(redis, QUEUE, [_worker({"create_task": 12})], every_s=10, now=1710.0, keep_s=600)
    assert [s["t"] for s in await read_history(redis, QUEUE, since_s=10_000, now=1710.0)] == [1300.0, 1710.0]
    assert [s["t"] for s in await kept.refresh(redis, QUEUE, now=1710.0)] == [1300.0, 1710.0]
    assert await redis.pttl(keys.history_baseline_key(QUEUE)) <= 600_000


def test_history_keep_takes_an_age_and_refuses_less_than_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """TASKLINE_HISTORY_KEEP=12h is 43200 s; 5m is refused (too short for the plots)."""
    base = {"DATABASE_URL": "postgresql://x@h/db", "REDIS_URL": "redis://h"}
    monkeypatch.setenv("TASKLINE_HISTORY_KEEP", "12h")
    assert Settings(**base).history_keep == 43_200  # type: ignore[arg-type]
    monkeypatch.setenv("TASKLINE_HISTORY_KEEP", "5m")
    with pytest.raises(ValueError, match="history_keep"):
        Settings(**base)  # type: ignore[arg-type]
