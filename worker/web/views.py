"""The page's handlers: overview, dead letters, trace, and the two guarded actions."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from worker.store.dead_letter_queries import DeadLetterFilter, delete_dead_letters, find_dead_letters
from worker.text import payload_text
from worker.tools.status import collect_status
from worker.tools.trace import trace
from worker.web.auth import Refusal
from worker.web.charts import Series, line_chart
from worker.web.state import WebState

__all__ = [
    "dead_letter",
    "dead_letters",
    "discard",
    "favicon",
    "healthz",
    "login",
    "overview",
    "overview_fragment",
    "queue_page",
    "replay",
    "status_json",
    "trace_page",
]

_STATUS_FRESH_S = 1.0
"""Browsers refresh every 2 s; one reading serves every request within this long."""
_LIST_LIMIT = 200
FORM_LIMIT_BYTES: Final = 4096
"""The most a POST body may hold: the page's forms send a CSRF token and a job id."""
_FORM_FIELDS: Final = 20
MAX_HOURS: Final = 24 * 366 * 10
"""The longest look back the dead letters' `hours=` filter takes (ten years)."""


def _state(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    web = _state(request)
    authenticated = web.access.authenticated(request)
    base = {
        "queue": web.settings.queue,
        "can_change": web.access.enabled,
        "authenticated": authenticated,
        "csrf": web.access.csrf_token() if authenticated else "",
        "user": web.access.user,
        "message": request.query_params.get("message", ""),
    }
    return web.templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


async def _status(request: Request) -> dict[str, Any]:
    web = _state(request)
    cached = web.status_cache
    if cached is not None and time.monotonic() - cached[0] < _STATUS_FRESH_S:
        return dict(cached[1])
    data = await collect_status(web.redis, web.engine, web.settings.queue, sample_every_s=web.settings.history_sample_s)
    web.status_cache = (time.monotonic(), data)
    return data


def _span_s(history: list[dict[str, Any]], now: float) -> float:
    """The plots' time span: the history there is, in whole 10 minutes, from 10 minutes to an hour."""
    oldest = min((h["t"] for h in history), default=now)
    return float(min(3600, max(600, math.ceil((now - oldest) / 600) * 600)))


def _charts(data: dict[str, Any]) -> list[str]:
    now = time.time()
    history = data["history"]
    span = _span_s(history, now)
    last = f"last {span / 60:.0f} min" if span < 3600 else "last hour"
    rate = Series("commands/s", [(h["t"], h["per_s"]) for h in history])
    latency = Series("p95", [(h["t"], h["p95"]) for h in history])
    ready = Series("ready", [(h["t"], h["ready"]) for h in history])
    deferred = Series("deferred", [(h["t"], h["deferred"]) for h in history])
    return [
        line_chart(f"Commands per second, {last}", [rate], span_s=span, now=now),
        line_chart(f"Latency p95 (issued → committed), {last}", [latency], unit="s", span_s=span, now=now),
        line_chart(f"Queue depth, {last}", [ready, deferred], span_s=span, now=now),
    ]


def _totals(data: dict[str, Any]) -> dict[str, Any]:
    workers = data["workers"]
    return {
        "applied": sum(float(w.get("commands_applied") or 0) for w in workers),
        "done": sum(int(w.get("jobs_done") or 0) for w in workers),
        "failed": sum(int(w.get("jobs_failed") or 0) for w in workers),
    }


async def overview(request: Request) -> Response:
    data = await _status(request)
    return _render(request, "overview.html", {"data": data, "charts": _charts(data), "totals": _totals(data)})


async def overview_fragment(request: Request) -> Response:
    data = await _status(request)
    return _render(request, "_live.html", {"data": data, "charts": _charts(data), "totals": _totals(data)})


async def status_json(request: Request) -> Response:
    return JSONResponse(await _status(request))


def _filter(request: Request) -> tuple[DeadLetterFilter, dict[str, str]]:
    params = {name: request.query_params.get(name, "").strip() for name in ("function", "reason", "hours")}
    newer = None
    if params["hours"]:
        newer = datetime.now(UTC) - timedelta(hours=_hours(params["hours"]))
    where = DeadLetterFilter(
        function=params["function"] or None, reason_contains=params["reason"] or None, newer_than=newer
    )
    return where, params


class BadFilter(ValueError):
    """A filter value the page cannot use; the message says which values it takes."""


def _hours(text: str) -> float:
    """`hours=` as a number of hours from 0 to MAX_HOURS (BadFilter otherwise: nan, 1e20, -1)."""
    try:
        hours = float(text)
    except ValueError:
        raise BadFilter(f"hours={text[:40]!r} is not a number of hours") from None
    if not (0 <= hours <= MAX_HOURS):  # also false for nan
        raise BadFilter(f"hours={text[:40]!r}: give a number of hours from 0 to {MAX_HOURS}")
    return hours


async def dead_letters(request: Request) -> Response:
    try:
        where, params = _filter(request)
    except BadFilter as bad:
        return _render(request, "message.html", {"title": "Bad filter", "text": str(bad)}, 400)
    async with _state(request).sessions() as session:
        letters = await find_dead_letters(session, where, limit=_LIST_LIMIT)
    return _render(request, "dead_letters.html", {"letters": letters, "params": params, "limit": _LIST_LIMIT})


async def dead_letter(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    async with _state(request).sessions() as session:
        letters = await find_dead_letters(session, DeadLetterFilter(job_ids=[job_id]))
    if not letters:
        return _render(request, "message.html", {"title": "Not found", "text": f"No dead letter {job_id}."}, 404)
    letter = letters[0]
    payload = payload_text(letter.payload)
    return _render(request, "dead_letter.html", {"letter": letter, "payload": payload})


async def _small_form(request: Request, limit: int = FORM_LIMIT_BYTES) -> dict[str, str]:
    """The urlencoded form of a POST, read only up to `limit` bytes (Refusal 413 beyond)."""
    too_big = Refusal(413, f"refused: a form of more than {limit} bytes; the page's forms are far smaller")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=_FORM_FIELDS)
    return dict(pairs)


async def _guarded(request: Request) -> str | Response:
    """The job id of a permitted change, or the refusal's page. Who sent it is checked before
    the body is read; the body is read only up to FORM_LIMIT_BYTES."""
    access = _state(request).access
    try:
        access.check_sender(request)
        try:
            form = await _small_form(request)
        except ValueError:  # more fields than a form of the page has
            raise Refusal(413, "refused: too many form fields") from None
        access.check_token(form.get("csrf"))
    except Refusal as refusal:
        headers = {"www-authenticate": 'Basic realm="taskline", charset="UTF-8"'} if refusal.status == 401 else None
        response = _render(request, "message.html", {"title": "Not allowed", "text": str(refusal)}, refusal.status)
        if headers:
            response.headers.update(headers)
        return response
    job_id = form.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return _render(request, "message.html", {"title": "Nothing to do", "text": "No job id was given."}, 400)
    return job_id


async def replay(request: Request) -> Response:
    from worker.tools.replay import replay_dead_letters

    job_id = await _guarded(request)
    if isinstance(job_id, Response):
        return job_id
    report = await replay_dead_letters(_state(request).settings, DeadLetterFilter(job_ids=[job_id]))
    if job_id in report.replayed:
        message = f"replayed {job_id}: it is back in the queue under the same job id"
    else:
        message = f"not replayed {job_id}: {report.skipped.get(job_id, 'no such dead letter')}"
    return RedirectResponse(f"/dead-letters?message={quote(message)}", status_code=303)


async def discard(request: Request) -> Response:
    job_id = await _guarded(request)
    if isinstance(job_id, Response):
        return job_id
    async with _state(request).sessions() as session, session.begin():
        count = await delete_dead_letters(session, [job_id])
    message = f"discarded {job_id}" if count else f"no dead letter {job_id} to discard"
    return RedirectResponse(f"/dead-letters?message={quote(message)}", status_code=303)


async def queue_page(request: Request) -> Response:
    from worker.tools.queue_view import SHOWN, queue_jobs

    web = _state(request)
    jobs = await queue_jobs(web.redis, web.settings.queue)
    return _render(request, "queue.html", {"jobs": jobs, "shown": SHOWN})


async def trace_page(request: Request) -> Response:
    ident = request.query_params.get("id", "").strip()
    story = None
    if ident:
        web = _state(request)
        async with web.engine.connect() as conn:
            story = await trace(conn, web.redis, web.settings.queue, ident)
    return _render(request, "trace.html", {"ident": ident, "story": story})


async def login(request: Request) -> Response:
    web = _state(request)
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if not web.access.enabled:
        text = "This page is read-only: set TASKLINE_WEB_PASSWORD (and restart `taskline web`) to replay or discard."
        return _render(request, "message.html", {"title": "Read-only", "text": text}, 403)
    if web.access.authenticated(request):
        return RedirectResponse(target, status_code=303)
    response = _render(
        request, "message.html", {"title": "Sign in", "text": "Sign in with TASKLINE_WEB_USER and its password."}, 401
    )
    response.headers["www-authenticate"] = 'Basic realm="taskline", charset="UTF-8"'
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def favicon(request: Request) -> Response:
    return RedirectResponse("/static/favicon.svg", status_code=301)
