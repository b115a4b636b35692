"""Serve the page with uvicorn: `taskline web` (the Procfile's `web:` process)."""

from __future__ import annotations

from typing import Final

from worker.config.settings import Settings, SettingsError, redact_url
from worker.logs import configure_logging, get_logger

__all__ = ["check_exposure", "loopback", "run_web"]

MAX_CONNECTIONS: Final = 64
"""Connections served at once; more get 503 (an operations page, not a public site)."""


def loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def check_exposure(settings: Settings, host: str) -> bool:
    """Whether the page will be open to the network without a password (the operator said so);
    raise SettingsError when it would be and they did not."""
    if settings.web_password or loopback(host):
        return False
    if not settings.web_allow_open:
        raise SettingsError(
            f"TASKLINE_WEB_PASSWORD is not set and the page would listen on {host}, where anyone who"
            " can reach it reads payloads and users' ids: set TASKLINE_WEB_PASSWORD, or listen on"
            " 127.0.0.1 (TASKLINE_WEB_HOST) behind an authenticating proxy, or set"
            " TASKLINE_WEB_ALLOW_OPEN=1 if the network itself is trusted"
        )
    return True


def run_web(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the page; raise SettingsError (before listening) when it would be open to the network
    without a password and TASKLINE_WEB_ALLOW_OPEN is not set."""
    import uvicorn

    from worker.web.app import create_app

    host = host or settings.web_host
    port = port or settings.web_port
    open_to_network = check_exposure(settings, host)
    configure_logging(settings.log_format, settings.log_level)
    get_logger("taskline.web").info(
        "serving the page",
        url=f"http://{host}:{port}/",
        queue=settings.queue,
        redis=redact_url(settings.redis_url),
        database=redact_url(settings.database_url),
        changes="replay, discard, delete, run now, pause and resume behind a password"
        if settings.web_password
        else "read-only",
    )
    if open_to_network:
        get_logger("taskline.web").warning(
            "the page is open to anyone who can reach it, payloads included (TASKLINE_WEB_ALLOW_OPEN=1)",
            host=host,
        )
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,  # taskline's logging (worker/logs.py) is already configured
        access_log=False,
        proxy_headers=True,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5,
        # A request still running 10 s after SIGTERM is cut: a stop never waits on a slow reader
        # (inside Kubernetes' default 30 s grace, and what the tests' 30 s wait relies on).
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    uvicorn.Server(config).run()
