"""`taskline web`: the Starlette application, its state, and how it starts and stops.

Without TASKLINE_WEB_PASSWORD the page is open and read-only (for 127.0.0.1, a private network,
or behind a proxy that authenticates); with it, every page needs the password and replay and
discard are offered (worker/web/auth.py). The process also runs the fleet watch (claims waiting
to expire, the history samples; worker/tools/fleet_watch.py), so the plots have data with or
without a scheduler.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from worker.config.redis_connection import make_tool_redis
from worker.config.settings import Settings
from worker.logs import get_logger
from worker.store.engine import make_sessions, make_tool_engine
from worker.tools.fleet_watch import FleetWatch
from worker.web import operator_views, views
from worker.web.auth import Access, SignInThrottle
from worker.web.plots import KeptHistory
from worker.web.state import WebState

__all__ = ["NO_STORE", "SECURITY_HEADERS", "create_app"]

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


NO_STORE = "no-store"
"""Cache-Control of every answer but the static files: pages show payloads, users' ids and
reasons, which no browser or proxy cache should keep."""


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["cache-control"] = NO_STORE
        return response


class _SignInRequired(BaseHTTPMiddleware):
    """With TASKLINE_WEB_PASSWORD set, every page needs it (payloads are data too); /healthz and
    the static files do not. An address with too many failed sign-ins is refused for a while
    (worker/web/auth.py's SignInThrottle)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        web: WebState = request.app.state.web
        access = web.access
        open_path = request.url.path == "/healthz" or request.url.path.startswith("/static/")
        if access.enabled and not open_path:
            peer = request.client.host if request.client else "?"
            wait_s = web.sign_ins.retry_after_s(peer)
            if wait_s > 0:
                return Response(
                    f"Too many failed sign-ins from {peer}: try again in {math.ceil(wait_s)} s.\n",
                    status_code=429,
                    headers={"retry-after": str(math.ceil(wait_s))},
                    media_type="text/plain",
                )
            if not access.authenticated(request):
                if "authorization" in request.headers:
                    web.sign_ins.failed(peer)
                return Response(
                    "Sign in with TASKLINE_WEB_USER and TASKLINE_WEB_PASSWORD.\n",
                    status_code=401,
                    headers={"www-authenticate": 'Basic realm="taskline", charset="UTF-8"'},
                    media_type="text/plain",
                )
        return await call_next(request)


def create_app(settings: Settings, *, watch: bool = True) -> Starlette:
    """The application; `watch=False` leaves the fleet watch off (tests of the pages alone)."""
    log = get_logger("taskline.web")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = make_tool_redis(settings.redis_url)
        engine = make_tool_engine(settings, "taskline-web", pool_size=2, max_overflow=2, command_timeout=10)
        outbox_engine = None
        if settings.outbox_url != settings.database_url:
            outbox_settings = settings.model_copy(update={"database_url": settings.outbox_url})
            outbox_engine = make_tool_engine(
                outbox_settings, "taskline-web", pool_size=1, max_overflow=1, command_timeout=10
            )
        password = settings.web_password.get_secret_value() if settings.web_password else None
        app.state.web = WebState(
            settings=settings,
            redis=redis,
            engine=engine,
            sessions=make_sessions(engine),
            access=Access(settings.web_user, password),
            sign_ins=SignInThrottle(),
            templates=_templates(),
            kept_history=KeptHistory(settings.history_keep),
            outbox_engine=outbox_engine,
        )
        fleet_watch = FleetWatch(
            redis,
            settings.queue,
            interval_s=settings.heartbeat_interval,
            sample_every_s=settings.history_sample_s,
            keep_s=settings.history_keep,
            log=log,
        )
        if watch:
            fleet_watch.start()
        try:
            yield
        finally:
            await fleet_watch.stop()
            await redis.aclose()
            await engine.dispose()
            if outbox_engine is not None:
                await outbox_engine.dispose()

    routes = [
        Route("/", views.overview),
        Route("/fragment/overview", views.overview_fragment),
        Route("/api/status", views.status_json),
        Route("/queue", operator_views.queue_view),
        Route("/actions", operator_views.actions_page),
        Route("/dead-letters", views.dead_letters),
        Route("/dead-letters/{job_id:path}", views.dead_letter),
        Route("/actions/replay", views.replay, methods=["POST"]),
        Route("/actions/discard", views.discard, methods=["POST"]),
        Route("/actions/delete", operator_views.delete_job, methods=["POST"]),
        Route("/actions/run-now", operator_views.run_job_now, methods=["POST"]),
        Route("/actions/pause", operator_views.pause, methods=["POST"]),
        Route("/actions/resume", operator_views.resume, methods=["POST"]),
        Route("/trace", views.trace_page),
        Route("/login", views.login),
        Route("/healthz", views.healthz),
        Route("/favicon.ico", views.favicon),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, middleware=[Middleware(_SecurityHeaders), Middleware(_SignInRequired)]
    )


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    templates.env.filters["seconds"] = _seconds
    templates.env.filters["number"] = _number
    return templates


def _when(value: Any) -> str:
    return "-" if not value else str(value)[:19].replace("T", " ")


def _seconds(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits or 2}f}"
    return f"{int(value):,}"
