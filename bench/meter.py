"""What the benchmark's processes cost: CPU, peak RSS, page faults and context switches.

`Meter` takes the CPU time of the consumer processes and of their PostgreSQL backends (and of
the whole machine) at the start and the end of an interval. psutil is used where installed;
without it the numbers come from /proc (and the machine's share is left out).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.services import Env, backend_pids

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency; /proc is the fallback
    psutil = None


def cpu_seconds(pid: int) -> float | None:
    try:
        if psutil is not None:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except Exception:
        return None


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if psutil is not None:
        with contextlib.suppress(Exception):
            return float(psutil.Process(pid).memory_info().rss) / 2**20
    return None


def events(pid: int) -> dict[str, int]:
    """Minor page faults and context switches of a process so far."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found["minor_faults"] = int(fields[7])
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                found["voluntary_switches"] = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                found["involuntary_switches"] = int(line.split()[1])
    return found


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far (all cores)."""
    if psutil is None:
        return None
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def tcp_connections_to(pid: int, port: int) -> set[str]:
    """`ip:port` of each TCP connection the process has to `port` (empty without psutil)."""
    if psutil is None:
        return set()
    with contextlib.suppress(Exception):
        return {
            f"{c.laddr.ip}:{c.laddr.port}"
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port
        }
    return set()


class Meter:
    """CPU of our client processes and of their PostgreSQL backends over an interval."""

    def __init__(self, env: Env, pids: list[int], exclude_backends: Sequence[int] = ()) -> None:
        self.env = env
        self.pids = pids
        self.exclude = list(exclude_backends)
        self.proc0: dict[int, float] = {}
        self.pg0: dict[int, float] = {}
        self.machine0: tuple[float, float] | None = None
        self.t0 = 0.0

    async def start(self) -> None:
        self.proc0 = {pid: cpu_seconds(pid) or 0.0 for pid in self.pids}
        self.events0 = {pid: events(pid) for pid in self.pids}
        self.pg0 = {pid: cpu_seconds(pid) or 0.0 for pid in await backend_pids(self.env, self.exclude)}
        self.machine0 = machine_cpu()
        self.t0 = time.perf_counter()

    async def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        proc = sum((cpu_seconds(pid) or 0.0) - self.proc0.get(pid, 0.0) for pid in self.pids)
        counted: dict[str, int] = {}
        for pid in self.pids:
            for name, value in events(pid).items():
                counted[name] = counted.get(name, 0) + value - self.events0.get(pid, {}).get(name, 0)
        pg = 0.0
        for pid in await backend_pids(self.env, self.exclude):
            now = cpu_seconds(pid)
            if now is not None:
                pg += now - self.pg0.get(pid, 0.0)
        result: dict[str, Any] = {"wall_s": wall, "client_cpu_s": proc, "pg_cpu_s": pg, "client_events": counted}
        machine1 = machine_cpu()
        if self.machine0 and machine1:
            busy = machine1[0] - self.machine0[0]
            total = machine1[1] - self.machine0[1]
            ncpu = os.cpu_count() or 1
            result["machine_busy_pct"] = 100.0 * busy / total if total else None
            # what the rest of the machine (other agents' test suites, ...) used meanwhile
            result["others_cpu_s"] = max(0.0, busy - proc - pg)
            result["machine_cores_busy"] = busy / total * ncpu if total else None
        return result


def machine_memory_gib() -> float | None:
    return round(psutil.virtual_memory().total / 2**30, 1) if psutil is not None else None
