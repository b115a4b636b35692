"""Scenario 5: latency at a steady rate. One consumer runs; the benchmark sends single
`create_task` commands at a fixed rate, each with `issued_at` = the moment it is sent; latency per
command is `task.created_at - task.title_issued_at`, computed in SQL at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
from redis.asyncio import Redis
from taskline_producer.client import TaskProducer
from taskline_producer.contract import CreateTask

from bench.meter import Meter, peak_rss_mib
from bench.processes import Starter, stop, wait_workers_ready
from bench.scenarios.workload import make_commands, percentile
from bench.services import USERS, Env, reset_tables


async def steady_latency(
    env: Env,
    name: str,
    rate: float,
    duration: float,
    start: Starter,
    kind: str,
    sender: Callable[[Redis, str], Callable[[CreateTask], Awaitable[Any]]] | None = None,
) -> dict[str, Any]:
    """Send single create_task commands at a fixed rate; latency = task.created_at - issued_at.
    `sender(redis, queue)` makes the send function (default: TaskProducer.send, which pushes the
    wake-up token)."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    procs = await start(queue)
    try:
        if kind == "worker":
            await wait_workers_ready(env, queue, procs)
        send = sender(env.redis, queue) if sender is not None else TaskProducer(env.redis, queue=queue).send
        await send(make_commands(1)[0])  # loads the script; also warms the consumer up
        monitor = await env.bench_conn()
        await wait_count(monitor, 1, 30)
        await monitor.execute("TRUNCATE task, processed_command")
        meter = Meter(env, [p.pid for p in procs], exclude_backends=[monitor.get_server_pid()])
        await meter.start()
        interval = 1.0 / rate
        t_start = time.perf_counter()
        sent, late = 0, 0
        send_times: list[float] = []
        while True:
            target = t_start + sent * interval
            if target - t_start >= duration:
                break
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            command = CreateTask(
                command_id=uuid4(),
                issued_at=datetime.now(UTC),
                task_id=uuid4(),
                user_id=sent % USERS + 1,
                title=f"latency {sent}",
                description="created by the taskline benchmark",
            )
            before = time.perf_counter()
            await send(command)
            send_times.append(time.perf_counter() - before)
            sent += 1
        actual = sent / (time.perf_counter() - t_start)
        await wait_count(monitor, sent, max(60.0, sent / 20))
        caught_up = time.perf_counter() - t_start
        usage = await meter.stop()
        rows = await monitor.fetch("SELECT extract(epoch FROM created_at - title_issued_at) * 1000 AS ms FROM task")
        rss = [v for v in (peak_rss_mib(p.pid) for p in procs) if v is not None]
        await monitor.close()
    finally:
        await stop(procs)
    latencies = [float(r["ms"]) for r in rows]
    return {
        "offered_rate": rate,
        "achieved_rate": actual,
        "all_applied_after_s": caught_up,
        "duration_s": duration,
        "sent": sent,
        "late_sends": late,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else None,
            "min": min(latencies) if latencies else None,
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "send_call_ms_p50": 1000 * (percentile(send_times, 50) or 0),
        "client_cpu_ms_per_command": 1000 * usage["client_cpu_s"] / max(sent, 1),
        "pg_cpu_ms_per_command": 1000 * usage["pg_cpu_s"] / max(sent, 1),
        "peak_rss_mib": max(rss) if rss else None,
        "usage": usage,
    }


async def wait_count(conn: asyncpg.Connection, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await conn.fetchval("SELECT count(*) FROM task") < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {n} tasks after {limit_s} s")
        await asyncio.sleep(0.02)
