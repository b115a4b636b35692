"""The page's guards (worker/web): refuse a change before reading its body, cap the body, limit
failed sign-ins, never let a browser cache a payload, answer 400 to a filter it cannot use, and
read no job value past the view's bound, however deep or large."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from worker.web.app import create_app

pytestmark = pytest.mark.integration

AUTH = ("admin", "pw")
FORM_LIMIT_BYTES = 4096
"""worker.web.views.FORM_LIMIT_BYTES, written out so that this file runs against any version."""


def _with_password(settings):
    return settings.model_copy(update={"web_password": SecretStr("pw")})


def test_a_read_only_page_refuses_a_post_whatever_its_body(settings):
    """Without a password, a POST is refused (403) from its head: a malformed multipart body or
    one over the cap is never parsed, so neither makes an error."""
    with TestClient(create_app(settings, watch=False), raise_server_exceptions=False) as client:
        broken = client.post(
            "/actions/replay",
            content=b"--nope\r\nContent-Disposition: garbage\r\n",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert broken.status_code == 403
        assert "TASKLINE_WEB_PASSWORD" in broken.text
        huge = client.post("/actions/discard", content=b"a=" + b"x" * (4 * FORM_LIMIT_BYTES))
        assert huge.status_code == 403


def test_a_signed_in_post_with_a_body_over_the_cap_is_refused(settings):
    """Signed in, a POST body larger than FORM_LIMIT_BYTES answers 413 (declared or streamed);
    a CSRF value that is not ASCII is a refusal (403), not a TypeError."""
    with TestClient(create_app(_with_password(settings), watch=False), raise_server_exceptions=False) as client:
        big = client.post("/actions/replay", auth=AUTH, content=b"csrf=x&job_id=" + b"j" * (2 * FORM_LIMIT_BYTES))
        assert big.status_code == 413

        def chunks():
            for _ in range(4):
                yield b"x" * FORM_LIMIT_BYTES

        streamed = client.post("/actions/replay", auth=AUTH, content=chunks())
        assert streamed.status_code == 413
        accented = client.post("/actions/replay", auth=AUTH, data={"csrf": "é", "job_id": "j"})
        assert accented.status_code == 403
        assert "CSRF" in accented.text


def test_failed_sign_ins_are_limited_per_address(settings):
    """After ten wrong passwords from one address, that address gets 429 with Retry-After, even
    with the right password, until the window passes; /healthz stays open."""
    with TestClient(create_app(_with_password(settings), watch=False)) as client:
        for _ in range(10):
            assert client.get("/api/status", auth=("admin", "guess")).status_code == 401
        limited = client.get("/api/status", auth=AUTH)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert client.get("/healthz").status_code == 200


def test_pages_that_show_payloads_are_never_cached(settings):
    """Every page and API answer says Cache-Control: no-store; the static files may be cached."""
    with TestClient(create_app(settings, watch=False)) as client:
        for path in ("/", "/api/status", "/queue", "/dead-letters", "/dead-letters/x", "/trace?id=x"):
            assert client.get(path).headers["cache-control"] == "no-store", path
        assert client.get("/static/style.css").headers.get("cache-control") != "no-store"


@pytest.mark.parametrize("hours", ["1e20", "nan", "inf", "-1", "abc"])
def test_an_hours_filter_the_page_cannot_use_answers_400(settings, hours):
    """hours=1e20 (an OverflowError in timedelta), nan, inf, a negative or a word: 400 with a
    message, never 500."""
    with TestClient(create_app(settings, watch=False), raise_server_exceptions=False) as client:
        response = client.get("/dead-letters", params={"hours": hours})
        assert response.status_code == 400
        assert "hours" in response.text
        assert client.get("/dead-letters", params={"hours": "2.5"}).status_code == 200


async def test_oversized_and_deeply_nested_jobs_do_not_break_the_queue_and_trace_views(settings, redis):
    """A 3 MiB job is listed by its size, unread; a job nested 200,000 levels deep (a
    RecursionError for json.loads) is listed as unreadable; /queue and /trace answer 200."""
    now = epoch_ms()
    await redis.set(keys.job_key("huge"), b'{"f": "create_task", "a": ["' + b"x" * (3 * 1024 * 1024) + b'"]}')
    await redis.set(keys.job_key("deep"), b"[" * 200_000 + b"]" * 200_000)
    await redis.zadd(settings.queue, {"huge": now - 2, "deep": now - 1})
    with TestClient(create_app(settings, watch=False), raise_server_exceptions=False) as client:
        page = client.get("/queue")
        assert page.status_code == 200
        assert "too large to read" in page.text
        assert "unreadable" in page.text
        for job_id in ("huge", "deep"):
            assert client.get("/trace", params={"id": job_id}).status_code == 200
