"""Health and metrics of a worker on real PostgreSQL and Redis: the heartbeat key, /metrics,
/healthz, /readyz, the fleet gauges, and readiness when the database is away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from taskline_producer import TaskProducer
from taskline_producer.keys import heartbeat_key, workers_index_key
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms

from tests.conftest import wait_for
from tests.http_client import http_get
from worker.arq_seam.wiring import supervise
from worker.logs import get_logger
from worker.observe.health import Health, check_database
from worker.observe.http_server import health_routes, serve
from worker.observe.metrics import Metrics
from worker.observe.monitor import Monitor
from worker.store.engine import make_engine
from worker.tools.fleet import live_workers

pytestmark = pytest.mark.integration

DOCUMENTED_METRICS = {
    "taskline_commands_processed",
    "taskline_commands_retried",
    "taskline_commands_dead_lettered",
    "taskline_command_duration_seconds",
    "taskline_command_latency_seconds",
    "taskline_jobs_in_progress",
    "taskline_queue_depth",
    "taskline_dead_letters_waiting",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(page: bytes, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    for metric in text_string_to_metric_families(page.decode()):
        if metric.name == family:
            return {tuple(sorted(s.labels.items())): s.value for s in metric.samples if not s.name.endswith("_created")}
    return {}


def with_bad_database(url: str) -> str:
    """The same URL with a password, pointing at a port where nothing listens."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:Pw-NOT-LOGGED@127.0.0.1:1"))


async def test_a_supervised_worker_beats_and_serves_metrics_healthz_and_readyz(settings, redis, db, users):
    """The process `taskline worker` runs: heartbeat key with the documented fields, /metrics with
    the documented names, the gauges follow the queue and the dead-letter table, and a SIGTERM
    removes the key."""
    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port, "heartbeat_interval": 0.2})
    task = asyncio.create_task(supervise(settings))
    try:

        async def ready() -> bool:
            return task.done() or (await http_get(port, "/readyz"))[0] == 200

        await wait_for(lambda: task.done() or _listening(port), timeout=20)
        await wait_for(ready, timeout=20)
        assert not task.done()
        status, body = await http_get(port, "/healthz")
        assert status == 200
        worker_id = json.loads(body)["worker_id"]

        raw = await redis.get(heartbeat_key(settings.queue, worker_id))
        document = json.loads(raw)
        assert {"worker_id", "host", "pid", "started_at", "last_beat", "jobs_running", "jobs_done", "db_ok"} <= set(
            document
        )
        assert (document["host"], document["pid"], document["db_ok"]) == (socket.gethostname(), os.getpid(), True)
        # Kept after a crash until the worker's claims have expired: 3 intervals + the claim expiry
        # (arq's timeout, TASKLINE_JOB_TIMEOUT + 5 s, + 10 s) + 1 interval.
        assert document["key_ttl_ms"] == int((4 * 0.2 + settings.job_timeout + 5 + 10) * 1000)
        assert 0 < await redis.pttl(heartbeat_key(settings.queue, worker_id)) <= document["key_ttl_ms"]
        assert document["running_job_ids"] == []
        assert [w["worker_id"] for w in await live_workers(redis, settings.queue)] == [worker_id]

        # Work: 5 commands applied, one job deferred for an hour, one dead letter in the table.
        producer = TaskProducer(redis, queue=settings.queue)
        for n in range(5):
            await producer.create_task(user_id=1, title=f"metered {n}")
        later = epoch_ms() + 3_600_000
        await redis.eval(
            ENQUEUE_SCRIPT,
            1,
            settings.queue,
            later,
            DEFAULT_JOB_TTL_MS,
            "deferred-job",
            envelope("create_task", {}, epoch_ms()),
        )
        await db.execute(
            "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue,"
            " failed_at) VALUES ('dl-1', 'create_task', 'x', 1, 'test', 'permanent', 1, $1, $2)",
            settings.queue,
            datetime.now(UTC) - timedelta(minutes=1),
        )

        async def page_shows_it() -> bytes | None:
            status, page = await http_get(port, "/metrics")
            processed = sum(samples(page, "taskline_commands_processed").values())
            depth = samples(page, "taskline_queue_depth")
            deferred = depth.get((("queue", settings.queue), ("state", "deferred")))
            dead = samples(page, "taskline_dead_letters_waiting").get((), 0)
            return page if status == 200 and processed >= 5 and deferred == 1 and dead >= 1 else None

        page = await wait_for(page_shows_it, timeout=20)
        names = {metric.name for metric in text_string_to_metric_families(page.decode())}
        assert names >= DOCUMENTED_METRICS
        assert samples(page, "taskline_queue_depth")[(("queue", settings.queue), ("state", "ready"))] == 0

        async def jobs_done_in_heartbeat() -> bool:
            doc = json.loads(await redis.get(heartbeat_key(settings.queue, worker_id)))
            return bool(doc["jobs_done"] >= 5 and doc["metrics"])

        await wait_for(jobs_done_in_heartbeat, timeout=10)

        os.kill(os.getpid(), signal.SIGTERM)  # supervise() installed its handler: a clean stop
        await asyncio.wait_for(task, timeout=30)
        assert await redis.exists(heartbeat_key(settings.queue, worker_id)) == 0
        assert await redis.zscore(workers_index_key(settings.queue), worker_id) is None
        assert not _listening(port)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await db.execute("DELETE FROM dead_letter WHERE job_id = 'dl-1'")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_readyz_turns_503_when_the_database_is_unreachable(settings, redis):
    """A worker whose database is away stays alive but is not ready, says why on /readyz and in
    its heartbeat, and never puts the database password in the reason."""
    bad = settings.model_copy(
        update={"database_url": with_bad_database(settings.database_url), "heartbeat_interval": 0.5}
    )
    assert await check_database(make_engine(settings), 5.0) is None  # the real one works

    engine = make_engine(bad)
    health = Health(interval=bad.heartbeat_interval)
    metrics = Metrics()
    monitor = Monitor(
        queue=bad.queue,
        health=health,
        metrics=metrics,
        redis=redis,
        engine=engine,
        log=get_logger("test"),
        secrets_=["Pw-NOT-LOGGED"],
    )
    server = await serve(health_routes(health, metrics), 0, host="127.0.0.1")
    port = server.sockets[0].getsockname()[1]
    try:
        health.pulse()
        await monitor.beat_once()
        assert health.db_error is not None
        assert health.redis_error is None  # the heartbeat itself was written

        status, body = await http_get(port, "/readyz")
        assert status == 503
        reason: dict[str, Any] = json.loads(body)
        assert reason["status"] == "not ready"
        assert reason["reasons"][0].startswith("database: ")
        assert "Pw-NOT-LOGGED" not in body.decode()
        assert (await http_get(port, "/healthz"))[0] == 200  # alive: a database outage is no reason to restart

        document = json.loads(await redis.get(heartbeat_key(bad.queue, health.worker_id)))
        assert document["db_ok"] is False
        assert "Pw-NOT-LOGGED" not in json.dumps(document)

        # Back to the real database: ready again at the next beat.
        monitor.engine = make_engine(settings)
        await monitor.beat_once()
        assert (await http_get(port, "/readyz"))[0] == 200
        await monitor.engine.dispose()
    finally:
        await monitor.stop()
        server.close()
        await server.wait_closed()
        await engine.dispose()
    assert await redis.exists(heartbeat_key(bad.queue, health.worker_id)) == 0


async def test_readyz_turns_503_when_redis_is_unreachable(settings):
    """The heartbeat cannot be written: not ready, with the Redis error as the reason."""
    from redis.asyncio import Redis

    dead_redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    engine = make_engine(settings)
    health = Health(interval=0.5)
    monitor = Monitor(
        queue=settings.queue, health=health, metrics=Metrics(), redis=dead_redis, engine=engine, log=get_logger("test")
    )
    try:
        await monitor.beat_once()
        ready, detail = health.readiness()
        assert not ready
        assert detail["reasons"][0].startswith("redis: ")
        assert health.db_error is None
    finally:
        await monitor.stop()
        await dead_redis.aclose()
        await engine.dispose()
