"""The arq behaviour taskline's overrides rely on (worker/arq_seam/overrides.py), pinned.

Each test runs arq's own `Worker` (not taskline's) against a real Redis and checks one thing
that TasklineWorker's `start_jobs` / `heart_beat` overrides assume. If an arq upgrade changes
it, the test fails here, before the worker misbehaves.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.worker import Function, Retry, Worker, func
from taskline_producer.wire import epoch_ms

pytestmark = pytest.mark.integration


async def _nothing(ctx: dict[str, Any]) -> None:
    return None


class Recording(Worker):
    """arq's Worker, recording which of the overridden methods its loop calls, in order."""

    def __init__(self, *args: Any, on_start: Any = None, on_beat: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, Any]] = []
        self.on_start = on_start
        self.on_beat = on_beat

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self.calls.append(("start_jobs", [job_id.decode() for job_id in job_ids]))
        if self.on_start is not None:
            await self.on_start(self, job_ids)

    async def heart_beat(self) -> None:
        await super().heart_beat()
        self.calls.append(("heart_beat", None))
        if self.on_beat is not None:
            await self.on_beat(self)


def _worker(redis: ArqRedis, queue: str, **kwargs: Any) -> Recording:
    return Recording(
        functions=[func(_nothing, name="nothing")],
        queue_name=queue,
        redis_pool=redis,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        max_jobs=kwargs.pop("max_jobs", 10),
        **kwargs,
    )


@pytest.fixture
async def arq_redis(redis: Any) -> ArqRedis:
    """arq's own client on the test's Redis database."""
    return ArqRedis(connection_pool=redis.connection_pool)


async def _drain(worker: Recording, queue: str) -> None:
    async def empty_queue(w: Recording, job_ids: list[bytes]) -> None:
        if job_ids:
            await w.pool.zrem(queue, *job_ids)

    worker.on_start = worker.on_start or empty_queue
    await asyncio.wait_for(worker.async_run(), 10)


async def test_the_poll_hands_start_jobs_the_due_ids_in_queue_order_then_calls_heart_beat(arq_redis, queue):
    """start_jobs gets only due ids, lowest score first, and heart_beat follows it in the same iteration."""
    now = epoch_ms()
    await arq_redis.zadd(queue, {"second": now - 1, "first": now - 2, "later": now + 60_000})
    worker = _worker(arq_redis, queue)

    async def take_due_then_leave(w: Recording, job_ids: list[bytes]) -> None:
        await w.pool.zrem(queue, *job_ids, "later")

    worker.on_start = take_due_then_leave
    await _drain(worker, queue)

    assert worker.calls[:2] == [("start_jobs", ["first", "second"]), ("heart_beat", None)]


async def test_the_poll_skips_start_jobs_while_every_slot_is_busy(arq_redis, queue):
    """With job_counter at max_jobs, arq's poll does not call start_jobs (heart_beat still runs)."""
    await arq_redis.zadd(queue, {"job": epoch_ms() - 1})
    worker = _worker(arq_redis, queue, max_jobs=1)
    beats = 0

    async def fill_slots(w: Recording, job_ids: list[bytes]) -> None:
        w.job_counter = w.max_jobs

    async def free_after_three(w: Recording) -> None:
        nonlocal beats
        beats += 1
        if beats == 3:
            w.job_counter = 0
            await w.pool.zrem(queue, "job")

    worker.on_start, worker.on_beat = fill_slots, free_after_three
    await asyncio.wait_for(worker.async_run(), 10)

    assert [name for name, _ in worker.calls] == ["start_jobs", "heart_beat", "heart_beat", "heart_beat"]


async def test_burst_mode_waits_for_the_tasks_in_self_tasks(arq_redis, queue):
    """arq's burst mode returns only after the tasks start_jobs put in `tasks` have finished."""
    await arq_redis.zadd(queue, {"job": epoch_ms() - 1})
    finished = asyncio.Event()

    async def slow_job() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    async def start(w: Recording, job_ids: list[bytes]) -> None:
        if job_ids:
            await w.pool.zrem(queue, *job_ids)
            w.tasks["job"] = asyncio.create_task(slow_job())

    worker = _worker(arq_redis, queue)
    worker.on_start = start
    await asyncio.wait_for(worker.async_run(), 10)

    assert finished.is_set()


async def test_a_graceful_stop_stops_picking_and_waits_for_self_tasks(arq_redis, queue):
    """handle_sig_wait_for_completion stops new picks (allow_pick_jobs) and lets the tasks in
    `tasks` finish within job_completion_wait before cancelling the loop."""
    await arq_redis.zadd(queue, {"job": epoch_ms() - 1})
    finished = asyncio.Event()

    async def job() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    async def start(w: Recording, job_ids: list[bytes]) -> None:
        if job_ids and "job" not in w.tasks:
            w.tasks["job"] = asyncio.create_task(job())
            w.handle_sig_wait_for_completion(signal.SIGTERM)

    worker = _worker(arq_redis, queue, job_completion_wait=5)
    worker.burst = False
    worker.on_start = start
    worker.main_task = asyncio.create_task(worker.main())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(worker.main_task, 10)

    assert finished.is_set()
    assert worker.allow_pick_jobs is False
    assert [name for name, _ in worker.calls].count("start_jobs") == 1


def test_the_worker_takes_every_option_taskline_passes(settings):
    """Every option worker_settings() sets, and the ones build_worker and the supervisor add, is a
    public parameter of arq's Worker."""
    from worker.arq_seam.wiring import worker_settings

    parameters = set(inspect.signature(Worker).parameters)
    assert set(worker_settings(settings)) | {"redis_pool", "handle_signals", "burst"} <= parameters


def test_retry_and_function_expose_what_the_runner_reads():
    """The runner reads Retry.defer_score and Function's coroutine, timeout_s and max_tries."""
    assert Retry(defer=1.5).defer_score == 1500
    assert Retry().defer_score is None
    job = func(_nothing, name="n", timeout=7, max_tries=3)
    assert isinstance(job, Function)
    assert (job.coroutine, job.timeout_s, job.max_tries) == (_nothing, 7, 3)
