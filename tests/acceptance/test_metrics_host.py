"""TASKLINE_METRICS_HOST is honoured by the real processes that serve /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import procfile_command, wait_for, worker_env

pytestmark = pytest.mark.acceptance


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _answers(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


def _start(settings, log_path: Path, process: str, port: int) -> subprocess.Popen[bytes]:
    env = worker_env(settings, TASKLINE_METRICS_PORT=str(port), TASKLINE_METRICS_HOST="127.0.0.2")
    with log_path.open("wb") as log:
        return subprocess.Popen(procfile_command(process), env=env, stdout=log, stderr=subprocess.STDOUT)


async def _serves_only_on(settings, tmp_path: Path, process: str) -> None:
    port = _free_port("127.0.0.2")
    proc = _start(settings, tmp_path / f"{process}.log", process, port)
    try:
        await wait_for(
            lambda: proc.poll() is not None or _answers("127.0.0.2", port) or _answers("127.0.0.1", port), timeout=30
        )
        assert proc.poll() is None, (tmp_path / f"{process}.log").read_text()
        assert await _answers("127.0.0.2", port)
        assert not await _answers("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(30)


async def test_the_scheduler_listens_on_the_metrics_host(settings, tmp_path):
    """`taskline scheduler` with TASKLINE_METRICS_HOST=127.0.0.2 serves there and not on 127.0.0.1."""
    await _serves_only_on(settings, tmp_path, "scheduler")


async def test_the_worker_listens_on_the_metrics_host(settings, tmp_path):
    """`taskline worker` with TASKLINE_METRICS_HOST=127.0.0.2 serves there and not on 127.0.0.1."""
    await _serves_only_on(settings, tmp_path, "worker")
