"""The outbox benchmark: `python -m bench.outbox [--n 50000] [--drain 20000] [--workers 2]`.

Two measurements, each beside its direct-send counterpart in the same run, on the same machine:

1. **Relay rate.** N commands already committed to `taskline_outbox`; one relay (in-process,
   the relay's own code: `worker.relay.relay.Relay.publish`, as `taskline relay` runs it) moves
   them into Redis, batch after batch, until none is left. Beside each run: `TaskProducer.send_many`
   of the same N commands (a direct pipelined send). Reported: both rates and their ratio.
2. **Drain through the outbox.** M commands applied by W real worker processes, fed three ways
   in each round: by `send_many` (direct), by `send_many(..., outcome_ttl=...)` (direct, asking
   for outcomes as the relay does: the fair baseline), or by committing them to the outbox in
   transactions of 1,000 while a real `taskline relay` process publishes them. The clock runs from
   the first send (or insert) until M tasks exist. Rounds alternate the order of the feeds.
   Reported: every rate, and per round the outbox's ratio to each direct feed.

Figures go to stdout as JSON; bench/README.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from taskline_producer.client import TaskProducer

from bench.processes import Proc, clean_environ, start_worker, stop, wait_workers_ready
from bench.scenarios.workload import make_commands, unlink_jobs
from bench.services import ROOT, Env, log, reset_tables, setup, teardown
from tests.support.outbox import insert_commands, reset_outbox
from worker.config.settings import Settings
from worker.relay.process import build_relay, close_relay

POLL_S = 0.05


async def relay_rate(env: Env, n: int) -> dict[str, Any]:
    await reset_outbox(env.database_url)
    commands = make_commands(n)
    conn = await env.bench_conn()
    try:
        await insert_commands(conn, commands)
    finally:
        await conn.close()
    queue = f"taskline:bench:{env.run_id}:relay"
    settings = Settings(DATABASE_URL=env.database_url, REDIS_URL=env.redis_url, queue=queue)  # type: ignore[call-arg]
    relay = build_relay(settings)
    try:
        cpu, t = time.process_time(), time.perf_counter()
        while await relay.publish():
            pass
        elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        await close_relay(relay)
    assert relay.counts.published == n, relay.counts
    await unlink_jobs(env, queue, [str(c.command_id) for c in commands])

    direct = f"taskline:bench:{env.run_id}:direct"
    producer = TaskProducer(env.redis, queue=direct)
    t = time.perf_counter()
    report = await producer.send_many(commands)
    direct_elapsed = time.perf_counter() - t
    assert report.queued == n, report
    await unlink_jobs(env, direct, [str(c.command_id) for c in commands])
    return {
        "commands": n,
        "relay_batch": settings.relay_batch,
        "relay_commands_per_s": n / elapsed,
        "relay_cpu_us_per_command": 1e6 * cpu / n,
        "direct_send_many_commands_per_s": n / direct_elapsed,
        "ratio": (n / elapsed) / (n / direct_elapsed),
    }


async def _start_relay(env: Env, queue: str) -> Proc:
    environ = clean_environ()
    environ.update(
        DATABASE_URL=env.database_url,
        REDIS_URL=env.redis_url,
        TASKLINE_QUEUE=queue,
        TASKLINE_LOG_LEVEL="WARNING",
        TASKLINE_LOG_FORMAT="json",
        TASKLINE_RELAY_POLL_DELAY="0.05",
    )
    log_path = env.tmp / "relay.log"
    with log_path.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "taskline") if (ROOT / ".venv").exists() else "taskline",
            "relay",
            env=environ,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(ROOT),
        )
    return Proc("relay", process, log_path)


async def _tasks(env: Env) -> int:
    conn = await env.bench_conn()
    try:
        return int(await conn.fetchval("SELECT count(*) FROM task"))
    finally:
        await conn.close()


async def _until_applied(env: Env, m: int, limit_s: float = 300.0) -> None:
    deadline = time.monotonic() + limit_s
    while await _tasks(env) < m:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every task applied after {limit_s} s")
        await asyncio.sleep(POLL_S)


FEEDS = ("direct", "direct_outcomes", "outbox")
OUTCOME_TTL_S = 86_400
"""What the relay asks for by default (TASKLINE_RELAY_OUTCOME_TTL), so the fair baseline asks the same."""


async def drain_side_by_side(env: Env, m: int, workers: int, rounds: int) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for round_no in range(rounds):
        order = FEEDS[round_no % 3 :] + FEEDS[: round_no % 3]
        rates = {feed: await _drain(env, m, workers, feed) for feed in order}
        rates["outbox_to_direct_outcomes"] = rates["outbox"] / rates["direct_outcomes"]
        rates["outbox_to_direct"] = rates["outbox"] / rates["direct"]
        runs.append(rates)
        log(
            f"round {round_no + 1} ({', '.join(order)}): outbox / direct with outcomes"
            f" {rates['outbox_to_direct_outcomes']:.2f}, outbox / direct {rates['outbox_to_direct']:.2f}"
        )
    return {"commands": m, "workers": workers, "rounds": runs}


async def _drain(env: Env, m: int, workers: int, feed: str) -> float:
    await reset_tables(env)
    await reset_outbox(env.database_url)
    queue = f"taskline:bench:{env.run_id}:drain-{feed}"
    procs = [await start_worker(env, queue, i) for i in range(workers)]
    try:
        await wait_workers_ready(env, queue, procs)
        if feed == "outbox":
            procs.append(await _start_relay(env, queue))
            await asyncio.sleep(2.0)  # the relay's start-up (imports) is not part of the drain
        commands = make_commands(m)
        t = time.perf_counter()
        if feed == "direct":
            await TaskProducer(env.redis, queue=queue).send_many(commands)
        elif feed == "direct_outcomes":
            await TaskProducer(env.redis, queue=queue).send_many(commands, outcome_ttl=OUTCOME_TTL_S)
        else:
            conn = await env.bench_conn()
            try:
                for start in range(0, m, 1000):
                    async with conn.transaction():
                        await insert_commands(conn, commands[start : start + 1000])
            finally:
                await conn.close()
        await _until_applied(env, m)
        elapsed = time.perf_counter() - t
    finally:
        await stop(procs)
    log(f"drain fed {feed}: {m / elapsed:,.0f} commands/s")
    return m / elapsed


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="commands for the relay-rate comparison")
    parser.add_argument("--drain", type=int, default=20_000, help="commands for the drain comparison")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in the drain")
    parser.add_argument("--repeat", type=int, default=3, help="relay-rate runs (each reported)")
    parser.add_argument("--rounds", type=int, default=3, help="drain rounds, each feeding all three ways")
    args = parser.parse_args(argv)
    env = await setup()
    try:
        rates = []
        for _ in range(args.repeat):
            rates.append(await relay_rate(env, args.n))
            log(
                f"relay {rates[-1]['relay_commands_per_s']:,.0f}/s,"
                f" send_many {rates[-1]['direct_send_many_commands_per_s']:,.0f}/s, ratio {rates[-1]['ratio']:.2f}"
            )
        drain = await drain_side_by_side(env, args.drain, args.workers, args.rounds)
        print(json.dumps({"relay_rate": rates, "drain": drain}, indent=2))
    finally:
        await teardown(env, keep_logs=False)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
