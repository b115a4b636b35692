"""A process's health without services: liveness and readiness (worker/observe/health.py), and
the HTTP server that serves them beside /metrics (worker/observe/http_server.py)."""

from __future__ import annotations

import json

from tests.http_client import http_get
from worker.observe.health import Health
from worker.observe.http_server import Response, health_routes, serve
from worker.observe.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_follows_the_pulse_and_readiness_the_last_checks() -> None:
    """Alive while pulsed within three intervals; ready while Redis and the database were checked
    within three intervals and the process is not stopping."""
    clock = Clock()
    health = Health(interval=5.0, clock=clock)
    assert not health.liveness()[0]  # never pulsed
    health.pulse()
    assert health.liveness()[0]
    ready, detail = health.readiness()
    assert not ready
    assert len(detail["reasons"]) == 2  # neither Redis nor the database has been checked

    health.record_redis(None)
    health.record_db(None)
    assert health.readiness()[0]
    clock.now += 15.0  # three intervals: still fresh
    assert health.liveness()[0]
    assert health.readiness()[0]
    clock.now += 0.1
    assert not health.liveness()[0]
    assert not health.readiness()[0]

    health.pulse()
    health.record_redis(None)
    assert health.record_db("OSError: connection refused")  # a change of state
    ready, detail = health.readiness()
    assert not ready
    assert detail["reasons"] == ["database: OSError: connection refused"]
    health.record_db(None)
    health.stopping = True
    assert health.readiness()[1]["reasons"] == ["stopping: finishing running jobs"]


async def test_the_http_server_serves_metrics_health_and_readiness() -> None:
    """/metrics, /healthz and /readyz answer from the registry and Health; other paths and methods are refused."""
    health = Health(interval=5.0)
    metrics = Metrics()
    metrics.commands.labels("create_task", "applied").inc(3)
    server = await serve(health_routes(health, metrics), 0, host="127.0.0.1")
    port = server.sockets[0].getsockname()[1]
    try:
        status, body = await http_get(port, "/metrics")
        assert status == 200
        assert b'taskline_commands_processed_total{function="create_task",outcome="applied"} 3.0' in body
        assert (await http_get(port, "/healthz"))[0] == 503  # no pulse yet
        health.pulse()
        assert (await http_get(port, "/healthz?verbose=1"))[0] == 200
        status, body = await http_get(port, "/readyz")
        assert status == 503
        assert json.loads(body)["status"] == "not ready"
        health.record_db(None)
        health.record_redis(None)
        assert (await http_get(port, "/readyz"))[0] == 200
        assert (await http_get(port, "/nothing"))[0] == 404
        assert (await http_get(port, "/metrics", method="POST"))[0] == 405
        assert (await http_get(port, "/metrics", method="HEAD"))[1] == b""
    finally:
        server.close()
        await server.wait_closed()


async def test_a_token_protects_metrics_but_not_health() -> None:
    """With a token, /metrics wants `Authorization: Bearer <token>`; /healthz does not."""

    async def handler(path: str) -> Response:
        return Response(200, b"page", "text/plain")

    server = await serve(handler, 0, host="127.0.0.1", token="s3cret")
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await http_get(port, "/metrics"))[0] == 401
        assert (await http_get(port, "/metrics", headers="Authorization: Bearer wrong\r\n"))[0] == 401
        assert await http_get(port, "/metrics", headers="Authorization: Bearer s3cret\r\n") == (200, b"page")
        assert (await http_get(port, "/healthz"))[0] == 200
    finally:
        server.close()
        await server.wait_closed()
