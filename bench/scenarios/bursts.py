"""Scenario 9: producers without the wake-up token, in bursts. One worker process runs with its
default settings; the benchmark sends `create_task` commands the way arq's own `enqueue_job` or
the plain Redis recipe without the token does (the job key and its queue entry, nothing else),
at about 2,000 commands/s in one of several burst patterns: pipelines of 100 every 50 ms, of 500
every 250 ms, of 1,000 every second, and a smooth stream of one command every 0.5 ms. Latency per
command is `processed_command.processed_at - issued_at` (the committing transaction's start),
computed in SQL at the end; the percentiles leave out the stream's first `WARM_UP_S` seconds,
whose worst latency is reported beside them. Then an idle worker's Redis commands per second are counted on a
redis-server of its own (`bench.seam.idle_commands_per_s`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.contract import CreateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, epoch_ms, job_of_command

from bench.processes import Starter, stop, wait_workers_ready
from bench.scenarios.latency import wait_count
from bench.scenarios.workload import percentile
from bench.services import USERS, Env, log, reset_tables

PATTERNS: tuple[tuple[str, int, float], ...] = (
    ("100 every 50 ms", 100, 0.05),
    ("500 every 250 ms", 500, 0.25),
    ("1000 every 1 s", 1000, 1.0),
    ("smooth, 1 every 0.5 ms", 1, 0.0005),
)
"""(label, commands per pipeline, seconds between pipelines): each about 2,000 commands/s."""
WARM_UP_S = 3.0
"""Commands issued in a stream's first seconds (or its first two bursts) are reported apart: the
stream's first job waits for an idle worker's next poll, up to the poll delay, whatever the
schedule (an idle worker cannot look more often and stay cheap)."""


async def send_tokenless(redis: Redis, queue: str, count: int, first: int) -> None:
    """`count` create_task commands in one pipeline, each its job key and queue entry (no token)."""
    now = epoch_ms()
    issued_at = datetime.now(UTC)
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(first, first + count):
            command = CreateTask(
                command_id=uuid4(),
                issued_at=issued_at,
                task_id=uuid4(),
                user_id=i % USERS + 1,
                title=f"burst {i}",
                description="created by the taskline benchmark",
            )
            job_id = str(command.command_id)
            pipe.set(keys.job_key(job_id), job_of_command(command, now), px=DEFAULT_JOB_TTL_MS, nx=True)
            pipe.zadd(queue, {job_id: now})
        await pipe.execute()


async def burst_latency(
    env: Env, name: str, batch: int, every_s: float, duration: float, start: Starter
) -> dict[str, Any]:
    """Send pipelines of `batch` tokenless commands every `every_s` for `duration` seconds to one
    running worker (a sender that falls behind sends what is due in one pipeline, so the offered
    rate holds); latency = processed_at - issued_at of each command."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    procs = await start(queue)
    try:
        await wait_workers_ready(env, queue, procs)
        monitor = await env.bench_conn()
        sent, late = 0, 0
        t_start = time.perf_counter()
        while True:
            target = t_start + (sent // batch) * every_s
            if target - t_start >= duration:
                break
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -every_s:
                late += 1
            elapsed = min(time.perf_counter() - t_start, duration - every_s / 2)
            due = (int(elapsed / every_s) + 1) * batch - sent
            await send_tokenless(env.redis, queue, max(due, batch), sent)
            sent += max(due, batch)
        achieved = sent / (time.perf_counter() - t_start)
        await wait_count(monitor, sent, max(60.0, sent / 20))
        rows = await monitor.fetch(
            "SELECT extract(epoch FROM issued_at - min(issued_at) OVER ()) AS at_s,"
            " extract(epoch FROM processed_at - issued_at) * 1000 AS ms FROM processed_command"
        )
        await monitor.close()
    finally:
        await stop(procs)
    warm = max(WARM_UP_S, 2 * every_s)
    latencies = [float(r["ms"]) for r in rows if float(r["at_s"]) >= warm]
    first = [float(r["ms"]) for r in rows if float(r["at_s"]) < warm]
    p50, p90, p99 = (percentile(latencies, p) or 0.0 for p in (50, 90, 99))
    log(
        f"{name}: {batch} every {every_s * 1000:g} ms: p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f} ms"
        f" (first {warm:g} s: max {max(first, default=0):.0f} ms)"
    )
    return {
        "batch": batch,
        "every_s": every_s,
        "offered_rate": batch / every_s,
        "achieved_rate": achieved,
        "sent": sent,
        "late_sends": late,
        "duration_s": duration,
        "latency_ms": {
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": max(latencies) if latencies else None,
        },
        "warm_up_s": warm,
        "warm_up_latency_ms": {"p50": percentile(first, 50), "max": max(first, default=None)},
    }
