"""Scenario 6: enqueue. How fast one producer queues commands (`send_many`, `send_bulk` in jobs of
100, 1,000 sequential `send` calls), and what a queued command costs Redis in memory.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from taskline_producer.client import TaskProducer
from taskline_producer.keys import JOB_KEY_PREFIX

from bench.scenarios.workload import BULK_SIZE, make_commands, percentile, unlink_jobs
from bench.services import Env


async def used_memory(env: Env) -> int:
    samples = []
    for _ in range(3):
        samples.append(int((await env.redis.info("memory"))["used_memory"]))
        await asyncio.sleep(0.05)
    return int(statistics.median(samples))


async def enqueue(env: Env, n: int, memory_n: int, single_n: int) -> dict[str, Any]:
    """How fast a producer queues commands, and what a queued command costs Redis."""
    result: dict[str, Any] = {}
    base = f"taskline:bench:{env.run_id}:enqueue"

    t = time.perf_counter()
    commands = make_commands(n)
    result["build_us_per_command"] = 1e6 * (time.perf_counter() - t) / n

    producer = TaskProducer(env.redis, queue=f"{base}:many")
    cpu, t = time.process_time(), time.perf_counter()
    report = await producer.send_many(commands)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert report.queued == n, report
    result["send_many"] = {
        "commands": n,
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "producer_cpu_ms_per_command": 1000 * cpu / n,
    }
    await unlink_jobs(env, f"{base}:many", [str(c.command_id) for c in commands])

    producer = TaskProducer(env.redis, queue=f"{base}:bulk")
    cpu, t = time.process_time(), time.perf_counter()
    ids = []
    for start in range(0, n, BULK_SIZE):
        ids.append((await producer.send_bulk(commands[start : start + BULK_SIZE])).job_id)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    result["send_bulk"] = {
        "commands": n,
        "jobs": len(ids),
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "producer_cpu_ms_per_command": 1000 * cpu / n,
    }
    await unlink_jobs(env, f"{base}:bulk", ids)
    del commands

    memory_commands = make_commands(memory_n)
    queue = f"{base}:memory"
    producer = TaskProducer(env.redis, queue=queue)
    before = await used_memory(env)
    await producer.send_many(memory_commands)
    after = await used_memory(env)
    sample = [str(c.command_id) for c in memory_commands[:: max(1, memory_n // 200)]]
    per_key = [await env.redis.memory_usage(JOB_KEY_PREFIX + job_id, samples=0) or 0 for job_id in sample]
    zset = await env.redis.memory_usage(queue, samples=0) or 0
    result["redis_memory"] = {
        "commands": memory_n,
        "used_memory_delta_bytes_per_command": (after - before) / memory_n,
        "memory_usage_job_key_bytes": statistics.fmean(per_key),
        "memory_usage_queue_bytes_per_command": zset / memory_n,
        "memory_usage_bytes_per_command": statistics.fmean(per_key) + zset / memory_n,
        "job_json_bytes": len(await env.redis.get(JOB_KEY_PREFIX + sample[0]) or b""),
    }
    await unlink_jobs(env, queue, [str(c.command_id) for c in memory_commands])

    queue = f"{base}:single"
    producer = TaskProducer(env.redis, queue=queue)
    singles = make_commands(single_n + 1)
    await producer.send(singles[0])  # SCRIPT LOAD on the first EVALSHA
    times = []
    for command in singles[1:]:
        t = time.perf_counter()
        await producer.send(command)
        times.append(1000 * (time.perf_counter() - t))
    result["send"] = {
        "calls": single_n,
        "p50_ms": percentile(times, 50),
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
    }
    await unlink_jobs(env, queue, [str(c.command_id) for c in singles])
    return result
