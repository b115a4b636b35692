"""Operations without services: REDIS_URL TLS options, Health, the HTTP server, the fleet page."""

from __future__ import annotations

import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.http_client import http_get
from worker.config.redis_connection import arq_redis_settings
from worker.config.settings import Settings, SettingsError, load_settings
from worker.observe.health import Health, metrics_snapshot
from worker.observe.http_server import Response, health_routes, serve
from worker.observe.metrics import Metrics
from worker.tools.fleet import render_fleet_metrics, summary

HEROKU_REDIS = "rediss://:p%40ss%2Fword@ec2-1-2-3-4.compute-1.amazonaws.com:25690/0?ssl_cert_reqs=none"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)


def test_arq_keeps_the_tls_options_and_decodes_the_password_of_a_heroku_redis_url() -> None:
    """arq's from_dsn drops ?ssl_cert_reqs=none and leaves %-escapes; the worker's settings do not."""
    from arq.connections import RedisSettings

    stock = RedisSettings.from_dsn(HEROKU_REDIS)
    assert (stock.ssl, stock.ssl_cert_reqs, stock.password) == (True, "required", "p%40ss%2Fword")  # arq alone

    ours = arq_redis_settings(HEROKU_REDIS)
    assert (ours.ssl, ours.ssl_cert_reqs, ours.password, ours.database) == (True, "none", "p@ss/word", 0)
    assert ours.host == "ec2-1-2-3-4.compute-1.amazonaws.com"
    assert ours.port == 25690


def test_redis_py_reads_the_same_url_the_same_way() -> None:
    """The producers, the CLI and replay use redis-py's from_url: TLS without verification, decoded password."""
    client = Redis.from_url(HEROKU_REDIS)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["password"]) == ("none", "p@ss/word")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_tls_query_options_are_validated_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt ssl_cert_reqs fails startup naming REDIS_URL (redis-py only accepts lower case)."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example.com:6380/0?ssl_cert_reqs=CERT_NONE")
    with pytest.raises(SettingsError, match=r"^REDIS_URL .*ssl_cert_reqs"):
        load_settings()
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example.com:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    settings = load_settings()
    assert arq_redis_settings(settings.redis_url).ssl_check_hostname is False
    assert settings.database_url == "postgresql+asyncpg://u:p@db/x"
    # Without TLS, redis-py would fail at the first connection: refused at startup instead.
    monkeypatch.setenv("REDIS_URL", "redis://:pw@redis.example.com:6379/0?ssl_cert_reqs=none")
    with pytest.raises(SettingsError, match=r"^REDIS_URL .*rediss://"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db.example.com:5432/d1", "postgresql+asyncpg://u:p@db.example.com:5432/d1"),
        ("postgres://u:p@db/d1?sslmode=require", "postgresql+asyncpg://u:p@db/d1?ssl=require"),
        ("postgresql://u:p@db/d1?x=1&sslmode=verify-full", "postgresql+asyncpg://u:p@db/d1?x=1&ssl=verify-full"),
    ],
)
def test_platform_database_urls_are_normalised_for_asyncpg(url: str, expected: str) -> None:
    """Heroku's postgres:// and libpq's ?sslmode= (asyncpg.connect() has no sslmode argument)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    normalised = Settings(DATABASE_URL=url).database_url  # type: ignore[call-arg]
    assert normalised == expected
    _, kwargs = create_async_engine(normalised).dialect.create_connect_args(create_async_engine(normalised).url)
    assert "sslmode" not in kwargs


def test_heartbeat_interval_and_metrics_port_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("TASKLINE_HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("TASKLINE_METRICS_PORT", "9100")
    settings = load_settings()
    assert (settings.heartbeat_interval, settings.metrics_port) == (2.5, 9100)
    monkeypatch.setenv("TASKLINE_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(SettingsError, match="TASKLINE_HEARTBEAT_INTERVAL"):
        load_settings()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_follows_the_pulse_and_readiness_the_last_checks() -> None:
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


def _document(worker_id: str, processed: float) -> dict[str, object]:
    metrics = Metrics()
    metrics.commands.labels("create_task", "applied").inc(processed)
    metrics.duration.labels("create_task").observe(0.01)
    metrics.queue_depth.labels("q", "ready").set(99)  # fleet gauges are not part of a worker's snapshot
    return {
        "worker_id": worker_id,
        "host": "h",
        "db_ok": True,
        "stopping": False,
        "metrics": metrics_snapshot(metrics.registry),
    }


def test_the_fleet_page_keeps_one_series_per_worker_and_adds_the_fleet_gauges() -> None:
    page = render_fleet_metrics("q", [_document("a:1:x", 5), _document("b:2:y", 7)], (4, 2), 3).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}
    processed = {
        sample.labels["worker"]: sample.value
        for sample in families["taskline_commands_processed"].samples
        if sample.name == "taskline_commands_processed_total"
    }
    assert processed == {"a:1:x": 5.0, "b:2:y": 7.0}
    assert families["taskline_command_duration_seconds"].type == "histogram"
    depth = {s.labels["state"]: s.value for s in families["taskline_queue_depth"].samples}
    assert depth == {"ready": 4.0, "deferred": 2.0}  # the fresh reading, not a worker's stale 99
    assert families["taskline_dead_letters_waiting"].samples[0].value == 3.0
    assert families["taskline_workers_live"].samples[0].value == 2.0


def test_a_schedulers_series_are_on_the_fleet_page_but_it_is_not_a_live_worker() -> None:
    metrics = Metrics()
    metrics.purge_rows.labels("task").inc(40)
    scheduler = {"worker_id": "s:3:z", "role": "scheduler", "metrics": metrics_snapshot(metrics.registry)}
    page = render_fleet_metrics("q", [_document("a:1:x", 5)], None, None, schedulers=[scheduler]).decode()
    families = {family.name: family for family in text_string_to_metric_families(page)}
    purged = [s for s in families["taskline_purge_rows_deleted"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in purged] == [({"table": "task", "worker": "s:3:z"}, 40.0)]
    assert families["taskline_workers_live"].samples[0].value == 1.0


def test_a_summary_drops_the_snapshot_and_says_whether_the_worker_is_ready() -> None:
    document = _document("a:1:x", 1)
    assert summary(document) == {"worker_id": "a:1:x", "host": "h", "db_ok": True, "stopping": False, "ready": True}
    assert summary({**document, "stopping": True})["ready"] is False
    assert summary({**document, "db_ok": False})["ready"] is False


def test_settings_model_has_the_operations_fields() -> None:
    settings = Settings(DATABASE_URL="postgres://u:p@db/x")  # type: ignore[call-arg]
    assert (settings.heartbeat_interval, settings.metrics_port) == (5.0, 0)
