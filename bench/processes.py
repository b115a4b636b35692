"""The consumer processes of a benchmark scenario: taskline workers and floor processes.

Workers are the real `.venv/bin/taskline worker` (or the same entry point under uvloop's event
loop) with `DATABASE_URL`, `REDIS_URL`, `TASKLINE_QUEUE`, `TASKLINE_LOG_LEVEL=WARNING` and every
other setting at its default (any `TASKLINE_*` of the caller's shell is dropped), importing
taskline from this source tree; their logs go to the run's temporary directory. A worker is
ready once its heartbeat is in Redis (tests/support/workers.py) and arq has polled the queue;
a floor process (bench/floor.py) is ready once it has printed `ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.services import ROOT, Env
from tests.support.workers import wait_for_heartbeats

BIN = Path(sys.executable).parent
UVLOOP_WORKER = (
    "import asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from worker.cli.app import main; main()"
)
"""`taskline worker` with uvloop's event loop (asyncio.run honours the policy on Python 3.11)."""
SETTLE_S = 0.5
"""After the workers are ready and before the clock starts: their first polls are over."""


@dataclass
class Proc:
    label: str
    process: asyncio.subprocess.Process
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid


Starter = Callable[[str], Awaitable[list[Proc]]]
"""Starts a scenario's consumers on the queue it is given."""


def clean_environ() -> dict[str, str]:
    """Our environment without taskline or OpenTelemetry settings (the tracing scenario sets its
    own), importing taskline from this source tree."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKLINE_", "OTEL_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return environ


async def start_worker(
    env: Env, queue: str, index: int, extra_env: dict[str, str] | None = None, uvloop: bool = False
) -> Proc:
    environ = clean_environ()
    environ.update(
        DATABASE_URL=env.database_url,
        REDIS_URL=env.redis_url,
        TASKLINE_QUEUE=queue,
        TASKLINE_LOG_LEVEL="WARNING",
        TASKLINE_LOG_FORMAT="json",
    )
    environ.update(extra_env or {})
    log_path = env.tmp / f"worker-{queue.rsplit(':', 1)[-1]}-{index}.log"
    with log_path.open("ab") as out:
        argv = [sys.executable, "-c", UVLOOP_WORKER, "worker"] if uvloop else [str(BIN / "taskline"), "worker"]
        process = await asyncio.create_subprocess_exec(
            *argv, env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT)
        )
    return Proc(f"worker-{index}", process, log_path)


async def start_floor(
    env: Env, queue: str, mode: str, concurrency: int, serve: bool = False, uvloop: bool = False
) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "bench.floor",
        "--database-url",
        env.database_url,
        "--redis-url",
        env.redis_url,
        "--queue",
        queue,
        "--mode",
        mode,
        "--concurrency",
        str(concurrency),
    ]
    if serve:
        argv.append("--serve")
    if uvloop:
        argv.append("--uvloop")
    process = await asyncio.create_subprocess_exec(
        *argv, env=clean_environ(), stdout=asyncio.subprocess.PIPE, cwd=str(ROOT)
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"floor process did not start: {line!r}")
    return Proc(f"floor-{mode}", process, None)


def raise_if_exited(procs: list[Proc]) -> None:
    for p in procs:
        if p.process.returncode is not None:
            raise RuntimeError(f"{p.label} exited with {p.process.returncode}: {tail(p.log_path)}")


async def wait_workers_ready(
    env: Env, queue: str, procs: list[Proc], limit_s: float = 60.0, redis: Redis | None = None
) -> None:
    """Every worker has written its heartbeat and arq has written `<queue>:health-check` (on its
    first poll), in `env.redis` or in `redis` (a server of a scenario's own); then `SETTLE_S`."""
    redis = redis if redis is not None else env.redis
    deadline = time.monotonic() + limit_s
    try:
        await wait_for_heartbeats(
            redis, queue, [p.pid for p in procs], timeout=limit_s, check=lambda: raise_if_exited(procs)
        )
        while not await redis.exists(f"{queue}:health-check"):
            raise_if_exited(procs)
            if time.monotonic() > deadline:
                raise TimeoutError
            await asyncio.sleep(0.05)
    except TimeoutError:
        raise RuntimeError(f"workers not ready after {limit_s} s: {[tail(p.log_path) for p in procs]}") from None
    await asyncio.sleep(SETTLE_S)


def tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def stop(procs: list[Proc], limit_s: float = 30.0) -> list[str]:
    """SIGTERM each of our processes, wait, kill the ones that hang; returns floor stdout tails."""
    for p in procs:
        if p.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.process.send_signal(signal.SIGTERM)
    outputs = []
    for p in procs:
        try:
            if p.process.stdout is not None:
                out = await asyncio.wait_for(p.process.stdout.read(), limit_s)
                outputs.append(out.decode(errors="replace"))
            await asyncio.wait_for(p.process.wait(), limit_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                p.process.kill()
            await p.process.wait()
    return outputs


def warnings_in(procs: list[Proc]) -> list[str]:
    lines: list[str] = []
    for p in procs:
        if p.log_path and p.log_path.exists():
            lines += [line for line in p.log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines
