"""The web application on real PostgreSQL and Redis, through Starlette's test client."""

from __future__ import annotations

import json
import time

import pytest
from starlette.testclient import TestClient
from taskline_producer.keys import heartbeat_key, workers_index_key

from worker.observe.heartbeat import metrics_snapshot
from worker.observe.metrics import Metrics
from worker.web.app import SECURITY_HEADERS, create_app

pytestmark = pytest.mark.integration


def _beat(redis_url: str, queue: str, applied: int) -> None:
    import redis as redis_sync

    metrics = Metrics()
    metrics.commands.labels("create_task", "applied").inc(applied)
    document = {
        "worker_id": "w:1:a",
        "host": "h",
        "pid": 1,
        "interval_s": 5.0,
        "key_ttl_ms": 15_000,
        "db_ok": True,
        "stopping": False,
        "jobs_running": 0,
        "metrics": metrics_snapshot(metrics.registry),
    }
    client = redis_sync.Redis.from_url(redis_url)
    client.set(heartbeat_key(queue, "w:1:a"), json.dumps(document), px=15_000)
    client.zadd(workers_index_key(queue), {"w:1:a": 1})
    client.close()


def test_read_only_pages_answer_with_strict_headers_and_refuse_changes(settings):
    """Every page answers 200 with the security headers; without TASKLINE_WEB_PASSWORD a replay
    is refused with a message naming the setting, and /login says the page is read-only."""
    with TestClient(create_app(settings, watch=False)) as client:
        for path in (
            "/",
            "/fragment/overview",
            "/api/status",
            "/queue",
            "/queue?state=deferred&function=create_task&user=3&offset=50",
            "/queue?state=running",
            "/dead-letters",
            "/dead-letters?user=3&task=abc&offset=50",
            "/actions",
            "/actions?action=pause&offset=50",
            "/trace",
            "/trace?id=nothing",
        ):
            response = client.get(path)
            assert response.status_code == 200, path
            for name, value in SECURITY_HEADERS.items():
                assert response.headers[name] == value
        for action in ("replay", "discard", "delete", "run-now", "pause", "resume"):
            refused = client.post(f"/actions/{action}", data={"job_id": "x", "csrf": "y"})
            assert refused.status_code == 403, action
            assert "TASKLINE_WEB_PASSWORD" in refused.text
        assert client.get("/login").status_code == 403
        assert client.get("/dead-letters/no-such-job").status_code == 404


def test_the_plots_history_survives_a_restart_of_the_web_process(settings, redis_url):
    """The samples live in Redis: a new application (a restarted `taskline web`) shows the rate
    the previous one sampled."""
    settings = settings.model_copy(update={"history_sample_s": 0.5})
    _beat(redis_url, settings.queue, 10)
    with TestClient(create_app(settings, watch=False)) as client:
        client.get("/api/status")  # the baseline sample
        _beat(redis_url, settings.queue, 40)
        deadline = time.monotonic() + 10
        while (first := client.get("/api/status").json())["rates"]["last_hour"]["applied"] == 0:
            assert time.monotonic() < deadline, "no sample after the baseline within 10 s"
            time.sleep(0.1)
    assert first["rates"]["last_hour"]["applied"] == 30.0
    with TestClient(create_app(settings, watch=False)) as client:
        again = client.get("/api/status").json()
    assert again["rates"]["last_hour"]["applied"] >= 30.0
    assert len(again["history"]) >= 1


def test_with_a_password_every_page_but_healthz_needs_it(settings):
    """Payloads are data too: with TASKLINE_WEB_PASSWORD set, reading needs the password as well."""
    from pydantic import SecretStr

    settings = settings.model_copy(update={"web_password": SecretStr("pw")})
    with TestClient(create_app(settings, watch=False)) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/", "/api/status", "/dead-letters", "/trace?id=x"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/api/status", auth=("admin", "pw")).status_code == 200
        assert client.get("/api/status", auth=("admin", "guess")).status_code == 401


def test_with_a_password_the_queue_actions_need_the_csrf_token_and_pause_shows_on_every_page(settings, redis_url):
    """Pause with a stale token is refused and changes nothing; with the page's token it pauses,
    and every page then says who paused claiming; resume clears it."""
    import re

    from pydantic import SecretStr

    settings = settings.model_copy(update={"web_password": SecretStr("pw")})
    with TestClient(create_app(settings, watch=False)) as client:
        auth = ("admin", "pw")
        assert client.post("/actions/pause", data={"csrf": "stale"}, auth=auth).status_code == 403
        assert "Claiming is paused" not in client.get("/queue", auth=auth).text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/", auth=auth).text)
        assert token is not None
        paused = client.post("/actions/pause", data={"csrf": token[1], "back": "/queue"}, auth=auth)
        assert paused.status_code == 200
        assert "claiming paused" in paused.text
        for path in ("/", "/queue", "/dead-letters", "/actions", "/trace"):
            assert "Claiming is paused</strong> by web:admin" in client.get(path, auth=auth).text, path
        client.post("/actions/resume", data={"csrf": token[1]}, auth=auth)
        assert "Claiming is paused" not in client.get("/", auth=auth).text
        assert "web:admin" in client.get("/actions", auth=auth).text


async def test_the_trace_page_takes_the_start_of_an_id_and_lists_the_ids_an_ambiguous_start_fits(settings, db):
    """As the command line: a unique start of an id shows its story; a start several ids share
    lists them as links."""
    import asyncio
    from uuid import uuid4

    stem = f"web-prefix-{uuid4().hex[:8]}"
    for job_id in (f"{stem}-alpha", f"{stem}-beta"):
        await db.execute(
            "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
            " VALUES ($1, 'create_task', '{}', 2, $2, 'permanent', 1, $3)",
            job_id,
            f"test: {job_id}",
            settings.queue,
        )

    def pages() -> tuple[str, str]:
        with TestClient(create_app(settings, watch=False)) as client:
            return client.get(f"/trace?id={stem}-al").text, client.get(f"/trace?id={stem}").text

    unique, ambiguous = await asyncio.to_thread(pages)
    assert f"test: {stem}-alpha" in unique
    assert 'data-trace="candidates"' in ambiguous
    assert f'href="/trace?id={stem}-alpha"' in ambiguous
    assert f'href="/trace?id={stem}-beta"' in ambiguous


def test_the_overview_shows_which_keys_fair_turns_hold_back_and_by_how_much(settings, redis_url):
    """With jobs waiting in two lanes, one key held by its rate limit, the overview fragment has
    the tile of jobs waiting their turn and a row per key with its jobs and why it waits; the
    status API carries the same."""
    import redis as redis_sync
    from taskline_producer import keys

    client = redis_sync.Redis.from_url(redis_url)
    queue = settings.queue
    client.rpush(keys.fair_lane_key(queue, "user:1"), *[f"1 1 job-{i}" for i in range(7)])
    client.rpush(keys.fair_lane_key(queue, "tenant:noisy"), "1 100 bulk-1", "1 1 job-x")
    client.zadd(keys.fair_turns_key(queue), {"user:1": 0})
    client.zadd(keys.fair_held_key(queue), {"tenant:noisy": int(time.time() * 1000) + 60_000})
    client.close()

    with TestClient(create_app(settings, watch=False)) as web:
        page = web.get("/fragment/overview").text
        status = web.get("/api/status").json()

    assert 'data-metric="in_fair_lanes">9<' in page
    assert 'data-fair-key="tenant:noisy" class="held"><td>tenant:noisy</td><td>2</td><td>held by its rate limit' in page
    assert 'data-fair-key="user:1"><td>user:1</td><td>7</td><td>waiting its turn' in page
    assert status["fairness"]["held_count"] == 1
    assert status["depth"]["in_fair_lanes"] == 9
