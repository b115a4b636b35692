"""Horizontal scaling: three real worker processes share one queue, each command is applied
exactly once, the load is split, and `taskline health` / `taskline metrics` see the fleet."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prometheus_client.parser import text_string_to_metric_families
from taskline_producer import TaskProducer
from taskline_producer.contract import CreateTask

from tests.conftest import taskline, wait_for, worker_env
from tests.http_client import http_get

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent
COMMANDS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processed(page: str, outcome: str | None = None) -> dict[str, float]:
    """taskline_commands_processed_total summed by `worker` label ('' on a worker's own page)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        if family.name != "taskline_commands_processed":
            continue
        for sample in family.samples:
            if sample.name == "taskline_commands_processed_total" and outcome in (None, sample.labels["outcome"]):
                worker = sample.labels.get("worker", "")
                totals[worker] = totals.get(worker, 0.0) + sample.value
    return totals


async def live(settings: Any) -> list[dict[str, Any]]:
    result = await taskline(settings, "health", "--all", "--json")
    return list(json.loads(result.stdout)["workers"]) if result.stdout else []


async def test_three_workers_split_the_load_and_apply_every_command_exactly_once(
    settings, redis, db, users, start_worker
):
    ports = [free_port() for _ in range(3)]
    workers = [start_worker(TASKLINE_METRICS_PORT=str(port), TASKLINE_HEARTBEAT_INTERVAL="1") for port in ports]

    async def all_three() -> list[dict[str, Any]] | None:
        assert all(w.proc.poll() is None for w in workers), [w.log() for w in workers]
        listed = await live(settings)
        return listed if len(listed) == 3 else None

    listed = await wait_for(all_three, timeout=30, interval=0.3)
    by_pid = {w["pid"]: w for w in listed}
    assert set(by_pid) == {w.proc.pid for w in workers}
    assert all(w["ready"] and w["db_ok"] for w in listed)

    base = datetime.now(UTC) - timedelta(minutes=5)
    commands = [
        CreateTask(
            command_id=uuid4(),
            issued_at=base + timedelta(microseconds=n),
            task_id=uuid4(),
            user_id=users[n % len(users)],
            title=f"scaled {n}",
        )
        for n in range(COMMANDS)
    ]
    report = await TaskProducer(redis, queue=settings.queue).send_many(commands)
    assert report.queued == COMMANDS
    command_ids = [c.command_id for c in commands]
    task_ids = [c.task_id for c in commands]

    async def all_applied() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids
        )
        return bool(count == COMMANDS)

    await wait_for(all_applied, timeout=180, interval=0.2)
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == COMMANDS
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0

    # Each worker's own /metrics: every one did some of the work, and together each command once.
    per_worker: list[float] = []
    for port in ports:
        status, page = await http_get(port, "/metrics")
        assert status == 200
        per_worker.append(sum(processed(page.decode(), "applied").values()))
    assert all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) == COMMANDS

    # The fleet page (what a Heroku `web: taskline metrics --serve $PORT` serves) adds them up the same.
    async def fleet_page_caught_up() -> str | None:
        result = await taskline(settings, "metrics")
        assert result.returncode == 0, result.stderr
        return result.stdout if sum(processed(result.stdout, "applied").values()) == COMMANDS else None

    page = await wait_for(fleet_page_caught_up, timeout=20, interval=0.5)
    assert set(processed(page)) == set(by_pid[w.proc.pid]["worker_id"] for w in workers)
    assert "taskline_workers_live{queue=" in page

    # SIGTERM one: it finishes, removes its heartbeat, and disappears from the list.
    victim, survivors = workers[0], workers[1:]
    victim_id = by_pid[victim.proc.pid]["worker_id"]
    assert victim.stop() == 0
    listed = await live(settings)
    assert sorted(w["pid"] for w in listed) == sorted(w.proc.pid for w in survivors)
    gone = await taskline(settings, "health", "--worker-id", victim_id)
    assert gone.returncode == 1
    assert "no live worker" in gone.stderr
    alive = await taskline(settings, "health", "--worker-id", by_pid[survivors[0].proc.pid]["worker_id"], "--ready")
    assert alive.returncode == 0, alive.stderr
    here = await taskline(settings, "health")  # the exec-probe form: the workers on this host
    assert here.returncode == 0, here.stderr
    for worker in survivors:
        assert worker.proc.poll() is None


async def test_taskline_metrics_serve_exposes_the_fleet_page_for_a_web_process(settings, start_worker):
    """`web: taskline metrics --serve $PORT`: one page for every worker, behind a bearer token if set."""
    worker = start_worker(TASKLINE_HEARTBEAT_INTERVAL="0.5")
    await wait_for(lambda: worker.proc.poll() is not None or "heartbeat written" in worker.log(), timeout=30)
    port = free_port()
    web = await asyncio.create_subprocess_exec(
        str(BIN / "taskline"),
        "metrics",
        "--serve",
        str(port),
        "--host",
        "127.0.0.1",
        env={**worker_env(settings), "TASKLINE_METRICS_TOKEN": "t0ken"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        async def serving() -> bool:
            if web.returncode is not None:
                pytest.fail(f"taskline metrics --serve exited: {await web.stderr.read() if web.stderr else ''!r}")
            try:
                return (await http_get(port, "/healthz"))[0] == 200
            except OSError:
                return False

        await wait_for(serving, timeout=30, interval=0.2)
        assert (await http_get(port, "/metrics"))[0] == 401

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n\r\n")
        await writer.drain()
        response = (await reader.read()).decode()
        writer.close()
        await writer.wait_closed()
        assert response.startswith("HTTP/1.1 200")
        assert f'taskline_workers_live{{queue="{settings.queue}"}} 1.0' in response
        assert "taskline_queue_depth{" in response
        assert "taskline_dead_letters_waiting " in response
    finally:
        web.terminate()
        assert await asyncio.wait_for(web.wait(), timeout=30) == 0
