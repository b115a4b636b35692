"""What can be attached to one consumer process during a drain (the `--profile` and `--diagnose`
extras of bench/run.py): py-spy, whose raw file bench/profile.py summarises, and strace with Redis
`MONITOR`, which count system calls and Redis commands per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.meter import tcp_connections_to
from bench.processes import BIN, Proc
from bench.scenarios.drain import Side
from bench.services import REDIS_BASE_URL, Env


async def pyspy(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    exe = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    await asyncio.sleep(0.5)  # past the start of the drain
    process = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "100",
        "--format",
        "raw",
        "-o",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0 or not os.path.exists(out):  # noqa: ASYNC240
        return {"error": output.decode(errors="replace")[-2000:]}
    from bench.profile import render, summarise

    summary = summarise(await asyncio.to_thread(out.read_text), top=20)
    summary["raw_file"] = str(out)
    summary["text"] = render(summary)
    return summary


def diagnose(env: Env, commands: int) -> Side:
    """Count the Redis commands (MONITOR) and system calls (strace -c) of one consumer process."""

    async def side(procs: list[Proc], attached: asyncio.Event, done: asyncio.Event) -> dict[str, Any]:
        pid = procs[0].pid
        out = env.tmp / f"strace-{pid}.txt"
        strace = shutil.which("strace")
        tracer = None
        if strace:
            tracer = await asyncio.create_subprocess_exec(
                strace, "-c", "-f", "-o", str(out), "-p", str(pid),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        # redis-cli MONITOR into a file: exact (redis-py's monitor loses lines when a read is cancelled)
        monitor_out = env.tmp / f"monitor-{pid}.txt"
        url = urlsplit(REDIS_BASE_URL)
        with monitor_out.open("wb") as sink:
            monitor = await asyncio.create_subprocess_exec(
                shutil.which("redis-cli") or "redis-cli", "-h", url.hostname or "127.0.0.1",
                "-p", str(url.port or 6379), "MONITOR", stdout=sink, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        await asyncio.sleep(0.5)  # strace and MONITOR attached
        attached.set()
        await done.wait()
        await asyncio.sleep(1.0)  # the last jobs' finish pipelines
        monitor.terminate()
        # the consumer's own Redis connections (MONITOR names clients by address)
        mine = tcp_connections_to(pid, env.port_redis)
        await monitor.wait()
        counts: dict[str, int] = {}
        clients: set[str] = set()
        pattern = re.compile(r'^[\d.]+ \[(\d+) ([^\]]+)\] "([^"]+)"')
        for line in (await asyncio.to_thread(monitor_out.read_text, errors="replace")).splitlines():
            match = pattern.match(line)
            if not match or int(match.group(1)) != env.redis_db or (mine and match.group(2) not in mine):
                continue
            name = match.group(3).upper()
            counts[name] = counts.get(name, 0) + 1
            clients.add(match.group(2))
        # the idle polling of the second after the last task is not the jobs' work
        counts.pop("ZRANGEBYSCORE", None)
        syscalls: dict[str, int] = {}
        if tracer is not None:
            with contextlib.suppress(ProcessLookupError):
                tracer.send_signal(signal.SIGINT)
            await tracer.wait()
            for line in (await asyncio.to_thread(out.read_text)).splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and not line.lstrip().startswith("100.00"):
                    with contextlib.suppress(ValueError):
                        syscalls[parts[-1]] = int(parts[3])
        total = sum(counts.values())
        return {
            "redis_commands_per_command": total / commands,
            "redis_commands_by_name_per_command": {
                k: round(v / commands, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
            },
            "redis_connections_seen": len(clients),
            "syscalls_per_command": sum(syscalls.values()) / commands if syscalls else None,
            "syscalls_by_name_per_command": {
                k: round(v / commands, 2) for k, v in sorted(syscalls.items(), key=lambda kv: -kv[1])[:12]
            },
            "note": "measured under strace and MONITOR: counts are exact, the speed of this run is not",
        }

    return side
