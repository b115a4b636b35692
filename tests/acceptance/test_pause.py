"""Pausing claiming for the whole queue, with a real worker: it stays up and healthy, claims
nothing while paused, every view says so, and after the resume it applies what waited."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from starlette.testclient import TestClient
from taskline_producer import TaskProducer
from taskline_producer.keys import heartbeat_key, in_progress_key

from tests.conftest import taskline, wait_for
from worker.config.settings import Settings
from worker.tools.pause import pause_claiming, read_pause, resume_claiming
from worker.web.app import create_app

pytestmark = pytest.mark.acceptance

BEATS = {"TASKLINE_HEARTBEAT_INTERVAL": "0.5"}


async def test_a_paused_queue_keeps_its_workers_up_and_claims_nothing_until_resumed(
    settings: Settings, redis, db, users, start_worker
):
    """While paused: a queued command is not claimed (through several claims and heartbeats), the
    worker stays live and ready (`health` exits 0), and the pause shows in its heartbeat, `status`
    (text and --json), `health --json`, the fleet metrics page and the web page's banner. Resumed,
    the command is applied once."""
    worker = start_worker(**BEATS)
    await wait_for(lambda: "worker started" in worker.log(), timeout=30)
    worker_id = next(json.loads(x) for x in worker.log().splitlines() if "worker started" in x)["worker_id"]
    pause = await pause_claiming(redis, settings.queue, "ops@example")
    assert (await read_pause(redis, settings.queue)) == pause
    receipt = await TaskProducer(redis, queue=settings.queue).create_task(user_id=1, title="waits for the resume")
    job_id = str(receipt.command_id)

    beats: list[float] = []

    async def paused_for_a_few_beats() -> bool:
        document = json.loads(await redis.get(heartbeat_key(settings.queue, worker_id)) or b"{}")
        if document.get("claiming_paused") is True and document.get("last_beat") not in beats:
            beats.append(document["last_beat"])
        return len(beats) >= 4  # two seconds of beats, and of the worker's claims, while paused

    await wait_for(paused_for_a_few_beats, timeout=20, interval=0.1)
    assert "claiming paused for the queue" in worker.log()
    assert await redis.exists(in_progress_key(job_id)) == 0
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", UUID(job_id)) == 0

    health = await taskline(settings, "health", "--all", "--ready", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["claiming_paused"] is True
    assert report["pause"]["by"] == "ops@example"
    assert report["workers"][0]["claiming_paused"] is True
    status = json.loads((await taskline(settings, "status", "--json")).stdout)
    assert (status["claiming_paused"], status["depth"]["ready"]) == (True, 1)
    assert "claiming paused (by ops@example" in (await taskline(settings, "status")).stdout
    metrics = await taskline(settings, "metrics")
    assert f'taskline_claiming_paused{{queue="{settings.queue}"}} 1.0' in metrics.stdout
    with TestClient(create_app(settings, watch=False)) as client:
        page = client.get("/").text
    assert "Claiming is paused for queue" in page
    assert "by ops@example" in page

    assert (await resume_claiming(redis, settings.queue, "ops@example")) == pause
    await wait_for(
        lambda: db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", UUID(job_id)), timeout=20
    )
    assert "claiming resumed for the queue" in worker.log()
    assert json.loads((await taskline(settings, "status", "--json")).stdout)["claiming_paused"] is False
    with TestClient(create_app(settings, watch=False)) as client:
        assert "Claiming is paused" not in client.get("/").text
