"""Purge benchmark: how fast the purge deletes beside a plain loop, and what it costs the workers.

    .venv/bin/python -m bench.purge [--completed 200000] [--open 100000] [--rounds 3] [--old main]
                                    [--load-completed 300000] [--commands 20000] [--load-rounds 3]
                                    [--json FILE]

In a database and a Redis database of its own (bench/services.py, like `bench.run`):

1. **Speed**, `--rounds` times, in alternating order: `--completed` completed tasks are seeded
   (beside `--open` open ones, seeded once) and deleted by, in turn, the floor (a plain loop of
   `WITH doomed AS (SELECT id … LIMIT 5000 FOR UPDATE SKIP LOCKED) DELETE …` on one connection),
   `taskline purge --older-than 30d --json` of this tree as a process of its own (wall time from
   spawn to exit: start-up included), and with `--old COMMIT` the same command of that commit
   (checked out in a temporary git worktree, run with this venv). Each figure is also given as a
   ratio to the floor of its round; every open task must survive. Then `taskline purge` with
   nothing due: its start-up alone. The longest transaction of each is reported.
2. **Beside the workers**, `--load-rounds` times: one real `taskline worker` process; seed
   `--load-completed` rows, time `--commands` create_task commands (`send_many`) alone, then while
   the scheduled purge (`PurgePlan.scheduled`, no time budget) deletes them; the ratio of the two
   rates is what the workers keep. The purge's rows/s, pauses and the commit rate it saw are
   reported beside it.

Goals (issue 19): `taskline purge` at least 100,000 rows/s wall (0.72 of the floor's 136,000-
141,000), no transaction over 0.2 s, the workers keep at least 85 % of their rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from taskline_producer import TaskProducer
from taskline_producer.contract import CreateTask

from bench.processes import start_worker, stop, wait_workers_ready
from bench.purge_table import USERS, cli_purge, count, plain_loop, seed
from bench.seam import old_tree, remove_tree
from bench.services import Env, log, setup, teardown
from worker.config.settings import Settings
from worker.purge.plan import PurgePlan, PurgeSummary
from worker.purge.purger import make_purge_engine, purge


async def speed(env: Env, args: argparse.Namespace, tree: Path | None) -> dict[str, Any]:
    contenders: list[tuple[str, Any]] = [("floor", lambda: plain_loop(env)), ("taskline purge", lambda: cli_purge(env))]
    if tree is not None:
        contenders.append((f"taskline purge {args.old}", lambda: cli_purge(env, tree)))
    rounds = []
    for index in range(args.rounds):
        outcome: dict[str, Any] = {}
        for name, delete in contenders if index % 2 == 0 else contenders[::-1]:
            await seed(env, args.completed)
            outcome[name] = await delete()
            if await count(env, "NOT completed") != args.open:
                raise RuntimeError(f"{name} deleted open tasks")
            log(f"round {index + 1}: {name} {outcome[name]['rows_per_s']:,.0f} rows/s")
        for name, _ in contenders[1:]:
            outcome[name]["ratio_to_floor"] = outcome[name]["rows_per_s"] / outcome["floor"]["rows_per_s"]
        outcome["start-up"] = {name: (await delete())["wall_s"] for name, delete in contenders[1:]}
        rounds.append(outcome)
    return {"rounds": rounds}


async def send_and_wait(
    settings: Settings, n: int, tag: str, purging: asyncio.Task[PurgeSummary] | None = None
) -> tuple[float, bool]:
    """Commands per second from the first send until all `n` create_task commands took effect.

    With a purge running (`purging`), the rate is measured only while the purge runs: if it
    ends first, up to its end. Returns (rate, whether the purge overlapped the whole run)."""
    import asyncpg
    from redis.asyncio import Redis

    now = datetime.now(UTC)
    commands = [
        CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=1 + i % USERS, title=f"{tag} {i}")
        for i in range(n)
    ]
    conn = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    redis = Redis.from_url(settings.redis_url)
    try:
        count_sql = "SELECT count(*) FROM processed_command"
        base = int(await conn.fetchval(count_sql))
        began = time.perf_counter()
        report = await TaskProducer(redis, queue=settings.queue).send_many(commands)
        assert report.queued == n, report
        while True:
            done = int(await conn.fetchval(count_sql)) - base
            elapsed = time.perf_counter() - began
            if purging is not None and purging.done():
                return done / elapsed, False
            if done >= n:
                return n / elapsed, True
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        await conn.close()


async def scheduled_purge(settings: Settings) -> PurgeSummary:
    engine = make_purge_engine(settings)
    try:
        return await purge(engine, PurgePlan.scheduled(settings, time_budget=None))
    finally:
        await engine.dispose()


async def beside_workers(env: Env, args: argparse.Namespace) -> dict[str, Any]:
    queue = f"taskline:bench:{env.run_id}:purge"
    settings = Settings(DATABASE_URL=env.database_url, REDIS_URL=env.redis_url, queue=queue)  # type: ignore[call-arg]
    procs = [await start_worker(env, queue, 0)]
    rounds = []
    try:
        await wait_workers_ready(env, queue, procs)
        for index in range(args.load_rounds):
            # Seed first (it ends with VACUUM ANALYZE, which also clears what the previous purge left):
            # both measurements see the same settled table, and only the purge differs.
            await seed(env, args.load_completed)
            alone, _ = await send_and_wait(settings, args.commands, f"alone-{index}")
            purging = asyncio.create_task(scheduled_purge(settings))
            await asyncio.sleep(0.5)  # the purge is under way
            with_purge, overlapped = await send_and_wait(settings, args.commands, f"with-purge-{index}", purging)
            summary = await purging
            rounds.append(
                {
                    "alone_per_s": alone,
                    "with_purge_per_s": with_purge,
                    "kept": with_purge / alone,
                    "purge_overlapped_whole_drain": overlapped,
                    "purge": summary.as_dict() | {"rows_per_s": summary.rows_per_second},
                }
            )
            log(f"load round {index + 1}: workers kept {with_purge / alone:.0%}")
    finally:
        await stop(procs)
    return {"rounds": rounds, "median_kept": statistics.median(r["kept"] for r in rounds) if rounds else None}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    env = await setup()
    tree = old_tree(args.old, env.tmp) if args.old else None
    try:
        await seed(env, 0, args.open)
        results["speed"] = await speed(env, args, tree)
        results["beside_workers"] = await beside_workers(env, args)
    finally:
        if tree is not None:
            remove_tree(tree)
        await teardown(env, keep_logs=False)
    results["load_after"] = os.getloadavg()
    return results


def report(results: dict[str, Any]) -> str:
    args = results["args"]
    lines = [f"{args['completed']:,} completed tasks beside {args['open']:,} open ones, per round:"]
    for index, outcome in enumerate(results["speed"]["rounds"], 1):
        for name, figures in outcome.items():
            if name == "start-up":
                continue
            ratio = f"  {figures['ratio_to_floor']:.2f} of the floor" if "ratio_to_floor" in figures else ""
            longest = figures.get("longest_tx_s")
            lines.append(
                f"  {index} {name:24} {figures['rows_per_s']:9,.0f} rows/s{ratio}"
                f"  longest transaction {'?' if longest is None else f'{longest:.3f}'} s"
            )
        startup = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in outcome["start-up"].items())
        lines.append(f"  {index} start-up with nothing due: {startup}")
    for index, r in enumerate(results["beside_workers"]["rounds"], 1):
        purge = r["purge"]
        lines.append(
            f"beside a worker, round {index}: {r['alone_per_s']:,.0f} commands/s alone, {r['with_purge_per_s']:,.0f}/s"
            f" with the scheduled purge: {r['kept']:.0%} kept"
            f" (whole drain overlapped: {r['purge_overlapped_whole_drain']});"
            f" the purge {purge['rows_per_s']:,.0f} rows/s, paused {purge['paused_s']:.1f} of {purge['seconds']:.1f} s,"
            f" others' commits {purge['others_commits_per_s']}/s, longest transaction {purge['longest_batch_s']:.3f} s"
        )
    before, after = results["load_before"][0], results["load_after"][0]
    lines.append(f"load average before/after: {before:.1f}/{after:.1f} on {results['cpus']} CPUs")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--completed", type=int, default=200_000, help="completed tasks per speed run")
    p.add_argument("--open", type=int, default=100_000, help="open tasks beside them (never deleted)")
    p.add_argument("--rounds", type=int, default=3, help="speed rounds")
    p.add_argument("--old", help="also time `taskline purge` of this commit (a temporary git worktree)")
    p.add_argument("--load-completed", type=int, default=300_000, help="completed tasks per round beside a worker")
    p.add_argument("--commands", type=int, default=20_000, help="commands per drain beside the purge")
    p.add_argument("--load-rounds", type=int, default=3, help="rounds beside a worker")
    p.add_argument("--json", type=Path, help="also write every figure here")
    return p


def main() -> None:
    args = parser().parse_args()
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
