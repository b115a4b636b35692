"""Serve the page with uvicorn: `taskline web` (the Procfile's `web:` process)."""

from __future__ import annotations

from typing import Final

from worker.config.settings import Settings, redact_url
from worker.logs import configure_logging, get_logger

__all__ = ["run_web"]

MAX_CONNECTIONS: Final = 64
"""Connections served at once; more get 503 (an operations page, not a public site)."""


def run_web(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from worker.web.app import create_app

    configure_logging(settings.log_format, settings.log_level)
    host = host or settings.web_host
    port = port or settings.web_port
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
    if not settings.web_password and host not in ("127.0.0.1", "localhost", "::1"):
        get_logger("taskline.web").warning(
            "the page is open to anyone who can reach it, payloads included: set TASKLINE_WEB_PASSWORD,"
            " or keep TASKLINE_WEB_HOST at 127.0.0.1 behind an authenticating proxy",
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
        server_header=False,
    )
    uvicorn.Server(config).run()
