"""The worker against an older commit of itself, side by side in one run; idle cost; latency by producer.

    .venv/bin/python -m bench.seam [--old 9ab7695] [--commands 20000] [--rounds 3] [--only drain idle latency]
                                   [--rate N] [--set TASKLINE_COMMIT_CONCURRENCY=1] [--json FILE]

* Throughput: the same drains (single-command jobs, then `apply_commands` bulk jobs of 100) by
  one worker process of this tree and one of `--old`, checked out in a temporary git worktree and
  run with this venv (the dependencies are the same), alternating so both see the same machine.
* Idle cost: a worker of each version alone on a private redis-server for `--idle-seconds`; the
  server's own count of commands processed, less the benchmark's own INFO calls, per second.
* Latency at half this tree's single-command drain rate, from issued_at to the committing
  transaction's start (`task.created_at`): with the documented wake-up token (taskline's client)
  and without it (a producer that writes the job and its queue entry and nothing else, as arq's
  own client does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.contract import CreateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, epoch_ms, job_of_command

from bench.processes import Proc, Starter, clean_environ, start_worker, stop, wait_workers_ready
from bench.scenarios.drain import drain
from bench.scenarios.latency import steady_latency
from bench.services import ROOT, Env, log, setup, teardown

DEFAULT_OLD = "9ab7695"
"""main before the worker moved onto arq's public surface."""


def old_tree(commit: str, where: Path) -> Path:
    path = where / f"old-{commit}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True, capture_output=True)
    return path


def remove_tree(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


async def start_old_worker(env: Env, queue: str, index: int, tree: Path, extra: dict[str, str]) -> Proc:
    """A worker of the old tree: its own modules first on sys.path, this venv's packages."""
    environ = clean_environ()
    environ.update(
        PYTHONPATH=str(tree),
        DATABASE_URL=extra.get("DATABASE_URL", env.database_url),
        REDIS_URL=extra.get("REDIS_URL", env.redis_url),
        TASKLINE_QUEUE=queue,
        TASKLINE_LOG_LEVEL="WARNING",
        TASKLINE_LOG_FORMAT="json",
    )
    log_path = env.tmp / f"old-worker-{queue.rsplit(':', 1)[-1]}-{index}.log"
    with log_path.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from worker.entry import main; main()", "worker",
            env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=str(tree),
        )  # fmt: skip
    return Proc(f"old-worker-{index}", process, log_path)


NEW_WORKER_ENV: dict[str, str] = {}
"""Settings for this tree's workers (`--set NAME=VALUE`), e.g. TASKLINE_COMMIT_CONCURRENCY=1."""


def starter(env: Env, tree: Path | None, extra: dict[str, str] | None = None) -> Starter:
    async def start(queue: str) -> list[Proc]:
        if tree is None:
            return [await start_worker(env, queue, 0, extra_env={**NEW_WORKER_ENV, **(extra or {})})]
        return [await start_old_worker(env, queue, 0, tree, extra or {})]

    return start


async def idle_commands_per_s(env: Env, tree: Path | None, seconds: float) -> dict[str, Any]:
    """Commands per second an idle worker sends, counted by a redis-server of its own."""
    port = _free_port()
    datadir = Path(tempfile.mkdtemp(prefix="taskline-idle-"))
    server = await asyncio.create_subprocess_exec(
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(datadir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    procs: list[Proc] = []
    try:
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        queue = f"taskline:bench:{env.run_id}:idle"
        procs = await starter(env, tree, {"REDIS_URL": url})(queue)
        await wait_workers_ready(env, queue, procs, redis=client)
        await asyncio.sleep(2.0)  # start-up traffic (scripts loaded, first heartbeats) is over
        before = int((await client.info("stats"))["total_commands_processed"])
        started = time.monotonic()
        await asyncio.sleep(seconds)
        after = int((await client.info("stats"))["total_commands_processed"])
        elapsed = time.monotonic() - started
        return {"seconds": round(elapsed, 1), "commands": after - before - 1, "per_s": (after - before - 1) / elapsed}
    finally:
        await stop(procs)
        await client.aclose()
        server.terminate()
        await server.wait()
        shutil.rmtree(datadir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tokenless_sender(redis: Redis, queue: str) -> Callable[[CreateTask], Awaitable[Any]]:
    """A producer that follows docs/contract.md but skips the optional wake-up token (as arq's
    own `enqueue_job` does): the job key and its queue entry, in one MULTI."""

    async def send(command: CreateTask) -> None:
        now = epoch_ms()
        job_id = str(command.command_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.job_key(job_id), job_of_command(command, now), px=DEFAULT_JOB_TTL_MS, nx=True)
            pipe.zadd(queue, {job_id: now})
            await pipe.execute()

    return send


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = await setup()
    tree = old_tree(args.old, env.tmp)
    results: dict[str, Any] = {"old": args.old, "commands": args.commands, "rounds": args.rounds, "scenarios": {}}
    scenarios: dict[str, Any] = results["scenarios"]
    try:
        for round_ in range(1, args.rounds + 1 if "drain" in args.only else 1):
            for label, version in (("new", None), ("old", tree)):
                for kind, bulk in (("single", False), ("bulk", True)):
                    key = f"drain {kind} K=1 {label}"
                    log(f"round {round_}: {key} ...")
                    result = await drain(
                        env, f"{kind}{label}{round_}", args.commands, bulk, starter(env, version), "worker"
                    )
                    scenarios.setdefault(key, []).append(result["commands_per_s"])
                    log(f"{key}: {result['commands_per_s']:.0f}/s")
        for label, version in (("new", None), ("old", tree)) if "idle" in args.only else ():
            log(f"idle {label} ...")
            scenarios[f"idle {label}"] = await idle_commands_per_s(env, version, args.idle_seconds)
            log(f"idle {label}: {scenarios[f'idle {label}']['per_s']:.2f} commands/s")
        rate = args.rate or 0.5 * max(scenarios.get("drain single K=1 new") or [2000.0])
        results["latency_rate"] = rate
        for label, version in (("new", None), ("old", tree)) if "latency" in args.only else ():
            for producer, sender in (("token", None), ("no token", tokenless_sender)):
                key = f"latency {producer} {label}"
                log(f"{key} at {rate:.0f}/s ...")
                outcome = await steady_latency(
                    env,
                    f"lat{label}{producer[:2]}",
                    rate,
                    args.latency_seconds,
                    starter(env, version),
                    "worker",
                    sender,
                )
                scenarios[key] = {"achieved_rate": outcome["achieved_rate"], **outcome["latency_ms"]}
                log(f"{key}: p50 {outcome['latency_ms']['p50']:.2f} ms, p99 {outcome['latency_ms']['p99']:.2f} ms")
    finally:
        remove_tree(tree)
        await teardown(env, keep_logs=False)
    return results


def report(results: dict[str, Any]) -> str:
    s = results["scenarios"]
    lines = [f"this tree against {results['old']}, {results['commands']} commands, {results['rounds']} rounds"]
    lines += (
        [f"this tree's workers with {' '.join(f'{k}={v}' for k, v in NEW_WORKER_ENV.items())}"]
        if NEW_WORKER_ENV
        else []
    )
    lines.append("")
    for kind in ("single", "bulk") if "drain single K=1 new" in s else ():
        new, old = s[f"drain {kind} K=1 new"], s[f"drain {kind} K=1 old"]
        ratio = sorted(n / o for n, o in zip(new, old, strict=True))
        lines.append(
            f"drain {kind:6} K=1: new {min(new):7.0f}-{max(new):7.0f}/s  old {min(old):7.0f}-{max(old):7.0f}/s"
            f"  new/old per round {ratio[0]:.2f}-{ratio[-1]:.2f}"
        )
    for label in ("new", "old") if "idle new" in s else ():
        lines.append(f"idle worker, {label}: {s[f'idle {label}']['per_s']:.2f} Redis commands/s")
    lines.append(f"latency at {results['latency_rate']:.0f} commands/s (issued_at → transaction start):")
    for label in ("new", "old") if "latency token new" in s else ():
        for producer in ("token", "no token"):
            r = s[f"latency {producer} {label}"]
            lines.append(
                f"  {label} worker, {producer:8} producer: p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms"
                f"  (sent {r['achieved_rate']:.0f}/s)"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default=DEFAULT_OLD, help=f"the commit to compare with (default {DEFAULT_OLD})")
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="latency scenario rate (default: half the new single drain)")
    parser.add_argument("--only", nargs="+", choices=("drain", "idle", "latency"), default=("drain", "idle", "latency"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a setting of this tree's workers"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    NEW_WORKER_ENV.update(item.split("=", 1) for item in args.set)
    results = asyncio.run(run(args))
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
