"""Who may reach the page: `taskline web` refuses to serve an open page to the network, a CSRF
value of any text is judged without an error, and failed sign-ins are limited per address."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.config.settings import Settings, SettingsError
from worker.web.auth import Access, Refusal, SignInThrottle
from worker.web.server import check_exposure


def _settings(**values: object) -> Settings:
    return Settings(DATABASE_URL="postgresql://u@db/x", **values)  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "web.internal"])
def test_an_open_page_on_the_network_is_refused_unless_allowed(host: str) -> None:
    """Without TASKLINE_WEB_PASSWORD, a host other than loopback is a configuration error naming
    the way out; TASKLINE_WEB_ALLOW_OPEN=1 lets it through (and is reported as open)."""
    with pytest.raises(SettingsError, match="TASKLINE_WEB_ALLOW_OPEN"):
        check_exposure(_settings(), host)
    assert check_exposure(_settings(web_allow_open=True), host) is True
    assert check_exposure(_settings(web_password=SecretStr("pw")), host) is False


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_page_needs_no_password(host: str) -> None:
    assert check_exposure(_settings(), host) is False


def test_taskline_web_exits_2_before_listening_when_open_to_the_network() -> None:
    """`taskline web --host <not loopback>` without a password exits 2 with the message. (The
    host is a documentation address this machine does not have: were the check gone, binding it
    would fail rather than open a port.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLINE_")}
    env.update(DATABASE_URL="postgresql://u@127.0.0.1:1/x", REDIS_URL="redis://127.0.0.1:1/0", TASKLINE_WEB_PORT="1")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "taskline"), "web", "--host", "192.0.2.1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "TASKLINE_WEB_ALLOW_OPEN" in result.stderr


@pytest.mark.parametrize("token", ["é", "токен", "\x00", "0" * 64, ""])
def test_any_csrf_text_is_refused_without_an_error(token: str) -> None:
    """A CSRF value that is not ASCII (compare_digest's TypeError on str) is a plain refusal."""
    access = Access("admin", "pw")
    with pytest.raises(Refusal) as refused:
        access.check_token(token)
    assert refused.value.status == 403
    access.check_token(access.csrf_token())


def test_failed_sign_ins_are_limited_until_the_window_passes() -> None:
    """`limit` failures within the window make the address wait until the first of them is
    `window_s` old; other addresses are unaffected; memory keeps at most `max_peers` addresses."""
    now = [1000.0]
    throttle = SignInThrottle(limit=3, window_s=60, max_peers=2, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after_s("a") == 0
        throttle.failed("a")
        now[0] += 1
    assert throttle.retry_after_s("a") == pytest.approx(57)
    assert throttle.retry_after_s("b") == 0
    now[0] += 57
    assert throttle.retry_after_s("a") == 0
    for peer in ("x", "y", "z"):
        throttle.failed(peer)
    assert len(throttle) == 2
