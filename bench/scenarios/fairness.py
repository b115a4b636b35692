"""Scenario 13: fair turns under a flood (`--only fairness`).

One worker process with its default settings. Fifty "other" users (users 2-51) each send
`create_task` commands at a steady rate (20/s each, 1,000/s in all, times `--fair-scale`) for
`--latency-seconds`, in pipelines every 50 ms (`TaskProducer.send_many`); user 1 floods the queue
with `--fair-flood` commands at the same moment (200,000 by default: half of them in bulk jobs of
100 with `send_bulk`, half single with `send_many`, sent while the others' stream runs). Three
runs on fresh queues, in one benchmark run:

* **quiet**: the others alone, no flood: the floor of the others' latency;
* **flood, unfair**: every producer made with `fair=False`, as before fair turns (arq's layout);
* **flood, fair**: every producer made with `fair=True` (keys `user:<id>`; the flood's bulk jobs
  cost 100 turns each).

Per run: the others' latency (`processed_command.processed_at - issued_at`: enqueue to commit)
p50/p99/max, and the total throughput: all commands (flood and others) over the time from the
first send to the last commit (meaningful only when the flood outlasts the others' stream:
`outlasted_stream` says so; size `--fair-flood` for it). The others' commands issued in the
stream's first second are left out of the percentiles in every run (their max is kept). On a
shared machine the load moves between runs, so a run is `--fair-rounds` rounds (default 2) of
the three, in the order quiet, unfair, fair, then fair, unfair, quiet, and so on, and each
round gives its ratios: the others' p99 under the flood, fair, over that round's quiet p99
(goal: at most 2), and the fair run's throughput over the unfair one's (goal: at least 0.9).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from taskline_producer.client import TaskProducer
from taskline_producer.contract import CreateTask

from bench.processes import Starter, stop, wait_workers_ready
from bench.scenarios.workload import percentile
from bench.services import Env, log, reset_tables

FLOOD_USER = 1
OTHER_USERS = tuple(range(2, 52))
OTHERS_RATE_EACH = 20.0
"""Commands per second each other user sends (times the scale)."""
TICK_S = 0.05
BULK = 100
WARM_UP_S = 1.0
"""The others' commands issued in the stream's first second are reported apart (their max), in
every run alike: the first ones wait for the idle worker's first claim and its connections."""


def _command(user_id: int, title: str) -> CreateTask:
    return CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=user_id, title=title)


async def _send_flood(producer: TaskProducer, flood: list[CreateTask]) -> None:
    half = (len(flood) // 2 // BULK) * BULK
    for start in range(0, half, BULK):
        await producer.send_bulk(flood[start : start + BULK])
    for start in range(half, len(flood), 5000):
        await producer.send_many(flood[start : start + 5000])
        await asyncio.sleep(0)  # let the others' stream send on time


async def _stream_others(producer: TaskProducer, rate: float, duration: float, sent: list[UUID]) -> int:
    """The others' steady stream: every TICK_S, what is due since the start, round-robin over the
    users; a sender that falls behind sends what is due in one pipeline. Returns late ticks."""
    t_start, late = time.perf_counter(), 0
    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= duration:
            return late
        due = int(min(elapsed + TICK_S, duration) * rate) - len(sent)
        if due > 0:
            batch = [
                _command(OTHER_USERS[(len(sent) + i) % len(OTHER_USERS)], f"other {len(sent) + i}") for i in range(due)
            ]
            await producer.send_many(batch)
            sent.extend(c.command_id for c in batch)
        delay = t_start + (int(elapsed / TICK_S) + 1) * TICK_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late += 1


async def flood_and_others(
    env: Env, name: str, start: Starter, *, fair: bool, flood_size: int, scale: float, duration: float
) -> dict[str, Any]:
    """One run (see the module docstring): a flood of `flood_size` from user 1 and the others'
    stream at `scale` times 1,000 commands/s, every producer `fair` or not."""
    await reset_tables(env)
    queue = f"taskline:bench:{env.run_id}:{name}"
    flood = [_command(FLOOD_USER, f"flood {i}") for i in range(flood_size)]
    rate = OTHERS_RATE_EACH * len(OTHER_USERS) * scale
    procs = await start(queue)
    try:
        await wait_workers_ready(env, queue, procs)
        producer = TaskProducer(env.redis, queue=queue, fair=fair)
        monitor = await env.bench_conn()
        others: list[UUID] = []
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        flooding = asyncio.create_task(_send_flood(producer, flood))
        late = await _stream_others(producer, rate, duration, others)
        await flooding
        total = flood_size + len(others)
        deadline = time.monotonic() + max(120.0, total / 200)
        while await monitor.fetchval("SELECT count(*) FROM processed_command") < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {total} commands applied in time")
            await asyncio.sleep(0.05)
        rows = await monitor.fetch(
            "SELECT extract(epoch FROM issued_at - $2::timestamptz) AS at_s,"
            " extract(epoch FROM processed_at - issued_at) * 1000 AS ms FROM processed_command"
            " WHERE command_id = ANY($1::uuid[])",
            others,
            started_at,
        )
        last = await monitor.fetchval(
            "SELECT extract(epoch FROM max(processed_at) - $1::timestamptz) FROM processed_command", started_at
        )
        flood_last = await monitor.fetchval(
            "SELECT extract(epoch FROM max(processed_at) - $1::timestamptz) FROM processed_command"
            " WHERE NOT (command_id = ANY($2::uuid[]))",
            started_at,
            others,
        )
        await monitor.close()
    finally:
        await stop(procs)
    latencies = [float(r["ms"]) for r in rows if float(r["at_s"]) >= WARM_UP_S]
    first = [float(r["ms"]) for r in rows if float(r["at_s"]) < WARM_UP_S]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    total_s = float(last)
    log(
        f"{name}: fair={fair} flood {flood_size}, others {len(others)} at {rate:.0f}/s:"
        f" others p50 {p50 or 0:.1f} / p99 {p99 or 0:.1f} ms; {total / total_s:.0f} commands/s in all"
    )
    return {
        "fair": fair,
        "flood": flood_size,
        "others_sent": len(others),
        "others_rate": rate,
        "late_ticks": late,
        "send_s": time.perf_counter() - t0,
        "latency_ms": {"p50": p50, "p99": p99, "max": max(latencies, default=None)},
        "warm_up_latency_max_ms": max(first, default=None),
        "total_s": total_s,
        "commands_per_s": total / total_s,
        "flood_drained_s": float(flood_last) if flood_last is not None else None,
        "outlasted_stream": total_s > duration + 0.5,
    }


def fairness_figures(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The issue's ratios within one run, per fair run: the others' p99 over the quiet p99, and
    the throughput over the unfair run's (None where a result is missing)."""

    def p99(result: dict[str, Any]) -> float | None:
        return (result.get("latency_ms") or {}).get("p99")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    figures: dict[str, Any] = {}
    rounds = sorted({key.rsplit("#", 1)[1] for key in scenarios if key.startswith("13 fairness") and "#" in key})
    for round_ in rounds:
        quiet = scenarios.get(f"13 fairness, quiet #{round_}", {})
        unfair = scenarios.get(f"13 fairness, flood unfair #{round_}", {})
        fair = scenarios.get(f"13 fairness, flood fair #{round_}", {})
        figures[f"round {round_}"] = {
            "unfair_others_p99_over_quiet": ratio(p99(unfair), p99(quiet)),
            "fair_others_p99_over_quiet": ratio(p99(fair), p99(quiet)),
            "fair_throughput_over_unfair": ratio(fair.get("commands_per_s"), unfair.get("commands_per_s")),
            "both_outlasted_stream": bool(fair.get("outlasted_stream") and unfair.get("outlasted_stream")),
        }
    return figures
