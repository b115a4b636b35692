"""The facts a benchmark result is read with: the machine, the services' and packages' versions,
the commit of the tree that ran."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.meter import machine_memory_gib
from bench.services import ROOT, Env


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "arq",
        "redis",
        "hiredis",
        "asyncpg",
        "sqlalchemy",
        "sqlmodel",
        "pydantic",
        "pydantic-core",
        "psutil",
        "py-spy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _local_facts() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "worker", "producers"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {"model": model, "commit": commit, "dirty": dirty}


async def machine_info(env: Env) -> dict[str, Any]:
    facts = await asyncio.to_thread(_local_facts)
    commit, dirty = facts["commit"], facts["dirty"]
    info = await env.redis.info("server")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": facts["model"],
        "memory_gib": machine_memory_gib(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": await env.admin.fetchval("SHOW server_version"),
        "redis": info.get("redis_version"),
        "packages": versions(),
        "git_commit": (commit + (" (worker/ or producers/ modified)" if dirty else ""))
        or "unknown (not a git checkout)",
        "shared_machine_note": "other agents' test suites ran on the same 2 cores, PostgreSQL and Redis "
        "during this run: absolute numbers are noisy; compare ratios measured in the same run",
    }
