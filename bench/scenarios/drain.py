"""Scenarios 1-4, 7 and 9: a drain. N commands are queued on a staging key, the consumers are
started and must be ready, then the staging key is renamed to the queue and the clock starts; it
stops when `SELECT count(*) FROM task` (polled every `POLL_S`) reaches N, or for a `workload` of
mixed commands (scenario 9) when `SELECT count(*) FROM processed_command` does (a command is
recorded in the transaction that applies it). Start-up and queueing are not in the rate, and all
jobs are due at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from taskline_producer.contract import Command
from taskline_producer.signing import SigningKey

from bench.meter import Meter, peak_rss_mib
from bench.processes import Proc, Starter, stop, tail, wait_workers_ready, warnings_in
from bench.scenarios.workload import enqueue_staged, leftovers, make_commands
from bench.services import Env, reset_tables, xact_counts

POLL_S = 0.05
STALL_S = 60.0

Side = Callable[[list[Proc], asyncio.Event, asyncio.Event], Coroutine[Any, Any, Any]]
"""Runs beside a drain: sets its first event once attached (the clock starts after it), and
may stop when the second is set (all tasks are in)."""


async def drain(
    env: Env,
    name: str,
    n: int,
    bulk: bool,
    start: Starter,
    kind: str,
    during: Side | None = None,
    outcome_ttl: int | None = None,
    signing_key: SigningKey | None = None,
    workload: Sequence[Command] | None = None,
    sampled: float | None = None,
) -> dict[str, Any]:
    """Queue n commands (asking for outcomes if `outcome_ttl`, signed with `signing_key`, from
    traced producers sampling the `sampled` share of their traces), start the consumers, release
    the queue, time until n tasks exist; or queue `workload` (n is its length) and time until every
    one of its commands is processed."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    staging = f"{queue}:staging"
    commands: Sequence[Command] = make_commands(n) if workload is None else workload
    done_sql = "SELECT count(*) FROM task" if workload is None else "SELECT count(*) FROM processed_command"
    job_ids = await enqueue_staged(env, staging, commands, bulk, outcome_ttl, signing_key, sampled)
    del commands
    procs = await start(queue)
    side_task: asyncio.Task[Any] | None = None
    try:
        if kind == "worker":
            await wait_workers_ready(env, queue, procs)
        x0 = await xact_counts(env)
        monitor = await env.bench_conn()
        monitor_queries = 0
        meter = Meter(env, [p.pid for p in procs], exclude_backends=[monitor.get_server_pid()])
        done = asyncio.Event()
        if during is not None:
            attached = asyncio.Event()
            side_task = asyncio.create_task(during(procs, attached, done))
            await asyncio.wait_for(attached.wait(), 30)
        await meter.start()
        t0 = time.perf_counter()
        await env.redis.rename(staging, queue)
        timeline: list[tuple[float, int]] = []
        last_change, last_count, count = t0, -1, 0
        rss: dict[int, float] = {}
        while True:
            await asyncio.sleep(POLL_S)
            count = await monitor.fetchval(done_sql)
            monitor_queries += 1
            now = time.perf_counter()
            timeline.append((round(now - t0, 3), count))
            if count != last_count:
                last_change, last_count = now, count
            if count >= n:
                break
            if now - last_change > STALL_S:
                raise RuntimeError(f"stalled at {count}/{n} tasks for {STALL_S:.0f} s")
            for p in procs:
                if p.process.returncode is not None and kind == "worker":
                    raise RuntimeError(f"{p.label} exited with {p.process.returncode}: {tail(p.log_path)}")
        elapsed = time.perf_counter() - t0
        done.set()
        usage = await meter.stop()
        for p in procs:
            value = peak_rss_mib(p.pid)
            if value is not None:
                rss[p.pid] = value
        processed = await monitor.fetchval("SELECT count(*) FROM processed_command")
        dead = await monitor.fetchval("SELECT count(*) FROM dead_letter")
        monitor_queries += 2
        await monitor.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and await env.redis.zcard(queue):  # noqa: ASYNC110 (polling Redis)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the last jobs' finish_job pipelines
        left = await leftovers(env, queue, job_ids) if kind == "worker" else None
        if side_task is not None:
            side_result = await side_task
            side_task = None
        else:
            side_result = None
    finally:
        if side_task is not None:
            side_task.cancel()
        outputs = await stop(procs)
    await asyncio.sleep(0.5)  # backends exit and flush their statistics
    x1 = await xact_counts(env)
    transactions = x1[0] - x0[0] - monitor_queries
    result: dict[str, Any] = {
        "commands": n,
        "jobs": len(job_ids),
        "processes": len(procs),
        "elapsed_s": elapsed,
        "commands_per_s": n / elapsed,
        "steady_commands_per_s": steady_rate(timeline, n),
        "client_cpu_ms_per_command": 1000 * usage["client_cpu_s"] / n,
        "pg_cpu_ms_per_command": 1000 * usage["pg_cpu_s"] / n,
        "client_events_per_command": {k: round(v / n, 3) for k, v in usage["client_events"].items()},
        "peak_rss_mib": max(rss.values()) if rss else None,
        "transactions_approx": transactions,
        "commands_per_transaction_approx": n / transactions if transactions > 0 else None,
        "rollbacks": x1[1] - x0[1],
        "processed_command_rows": processed,
        "dead_letters": dead,
        "usage": usage,
        "timeline": timeline[:: max(1, len(timeline) // 200)],
    }
    if left is not None:
        result["redis_leftovers"] = left
    if kind == "worker":
        logged = warnings_in(procs)
        result["worker_log_lines"] = len(logged)
        result["worker_log_sample"] = logged[:5]
        result["not_yet_retries"] = sum(1 for line in logged if _is_not_yet_retry(line))
    else:
        counters = [json.loads(o.strip().splitlines()[-1]) for o in outputs if o.strip()]
        result["floor_counters"] = counters
    if side_result is not None:
        result["side"] = side_result
    return result


def _is_not_yet_retry(line: str) -> bool:
    """A worker's JSON log line saying a command goes back to Redis as a not-yet retry (INFO)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    if not isinstance(record, dict):
        return False
    return record.get("event") == "command will be retried" and record.get("kind") == "not_yet"


def steady_rate(timeline: list[tuple[float, int]], n: int) -> float | None:
    """Commands/s between 10 % and 90 % of the tasks (no start-up or tail effects)."""

    def when(target: float) -> float | None:
        previous = (0.0, 0)
        for t, c in timeline:
            if c >= target:
                t0, c0 = previous
                return t0 + (t - t0) * ((target - c0) / (c - c0)) if c != c0 else t
            previous = (t, c)
        return None

    a, b = when(0.1 * n), when(0.9 * n)
    if a is None or b is None or b <= a:
        return None
    return 0.8 * n / (b - a)
