"""The page's handlers: overview, dead letters, trace, and the two guarded actions."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from worker.store.dead_letter_queries import DeadLetterFilter, delete_dead_letters, find_dead_letters
from worker.store.operator_actions import record_actions
from worker.text import payload_text
from worker.tools.queue_actions import paused_by
from worker.tools.status import collect_status
from worker.tools.trace import ids_starting_with, trace
from worker.web.auth import Refusal
from worker.web.plots import charts, function_rates
from worker.web.state import WebState

__all__ = [
    "dead_letter",
    "dead_letters",
    "discard",
    "favicon",
    "guarded_job_id",
    "healthz",
    "login",
    "operator",
    "overview",
    "overview_fragment",
    "refused",
    "render",
    "replay",
    "status_json",
    "trace_page",
]

_STATUS_FRESH_S = 1.0
"""Browsers refresh every 2 s; one reading serves every request within this long."""
FORM_LIMIT_BYTES: Final = 4096
"""The most a POST body may hold: the page's forms send a CSRF token and a job id."""
_FORM_FIELDS: Final = 20
MAX_HOURS: Final = 24 * 366 * 10
"""The longest look back the dead letters' `hours=` filter takes (ten years)."""
_PAGE = 50
"""Dead letters per page."""


def _state(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


async def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    web = _state(request)
    authenticated = web.access.authenticated(request)
    base = {
        "queue": web.settings.queue,
        "can_change": web.access.enabled,
        "authenticated": authenticated,
        "csrf": web.access.csrf_token() if authenticated else "",
        "user": web.access.user,
        "message": request.query_params.get("message", ""),
        "paused": await paused_by(web.redis, web.settings.queue),
    }
    return web.templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)


async def _status(request: Request) -> dict[str, Any]:
    web = _state(request)
    cached = web.status_cache
    if cached is not None and time.monotonic() - cached[0] < _STATUS_FRESH_S:
        return dict(cached[1])
    data = await collect_status(
        web.redis,
        web.engine,
        web.settings.queue,
        sample_every_s=web.settings.history_sample_s,
        keep_s=web.settings.history_keep,
    )
    web.status_cache = (time.monotonic(), data)
    return data


def _totals(data: dict[str, Any]) -> dict[str, Any]:
    workers = data["workers"]
    return {
        "applied": sum(float(w.get("commands_applied") or 0) for w in workers),
        "done": sum(int(w.get("jobs_done") or 0) for w in workers),
        "failed": sum(int(w.get("jobs_failed") or 0) for w in workers),
    }


async def _overview_context(request: Request) -> dict[str, Any]:
    web = _state(request)
    data = await _status(request)
    samples = await web.kept_history.refresh(web.redis, web.settings.queue)
    return {
        "data": data,
        "charts": charts(samples, web.settings.history_keep),
        "totals": _totals(data),
        "function_rates": function_rates(samples),
        "keep": web.settings.history_keep,
    }


async def overview(request: Request) -> Response:
    return await render(request, "overview.html", await _overview_context(request))


async def overview_fragment(request: Request) -> Response:
    return await render(request, "_live.html", await _overview_context(request))


async def status_json(request: Request) -> Response:
    return JSONResponse(await _status(request))


def _filter(request: Request) -> tuple[DeadLetterFilter, dict[str, str]]:
    names = ("function", "reason", "hours", "user", "task")
    params = {name: request.query_params.get(name, "").strip() for name in names}
    newer = None
    if params["hours"]:
        newer = datetime.now(UTC) - timedelta(hours=_hours(params["hours"]))
    user = int(params["user"]) if params["user"].isdigit() else None
    params["user"] = "" if user is None else params["user"]
    where = DeadLetterFilter(
        function=params["function"] or None,
        reason_contains=params["reason"] or None,
        newer_than=newer,
        user_id=user,
        task_id=params["task"] or None,
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
        return await render(request, "message.html", {"title": "Bad filter", "text": str(bad)}, 400)
    offset = request.query_params.get("offset", "0")
    start = int(offset) if offset.isdigit() else 0
    async with _state(request).sessions() as session:
        letters = await find_dead_letters(session, where, limit=_PAGE + 1, offset=start)
    query = {name: value for name, value in params.items() if value}
    pages = {
        "older": f"/dead-letters?{urlencode({**query, 'offset': start + _PAGE})}" if len(letters) > _PAGE else None,
        "newer": f"/dead-letters?{urlencode({**query, 'offset': max(0, start - _PAGE)})}" if start else None,
    }
    context = {"letters": letters[:_PAGE], "params": params, "offset": start, "pages": pages}
    return await render(request, "dead_letters.html", context)


async def dead_letter(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    async with _state(request).sessions() as session:
        letters = await find_dead_letters(session, DeadLetterFilter(job_ids=[job_id]))
    if not letters:
        return await render(request, "message.html", {"title": "Not found", "text": f"No dead letter {job_id}."}, 404)
    letter = letters[0]
    payload = payload_text(letter.payload)
    return await render(request, "dead_letter.html", {"letter": letter, "payload": payload})


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


async def refused(request: Request) -> tuple[Any, Response | None]:
    """The form of a permitted change and None, or None and the refusal's page. Who sent it is
    checked before the body is read; the body is read only up to FORM_LIMIT_BYTES."""
    access = _state(request).access
    try:
        access.check_sender(request)
        try:
            form = await _small_form(request)
        except ValueError:  # more fields than a form of the page has
            raise Refusal(413, "refused: too many form fields") from None
        access.check_token(form.get("csrf"))
    except Refusal as refusal:
        response = await render(request, "message.html", {"title": "Not allowed", "text": str(refusal)}, refusal.status)
        if refusal.status == 401:
            response.headers["www-authenticate"] = 'Basic realm="taskline", charset="UTF-8"'
        return None, response
    return form, None


async def guarded_job_id(request: Request) -> str | Response:
    """The job id of a permitted change, or the refusal's page."""
    form, refusal = await refused(request)
    if refusal is not None:
        return refusal
    job_id = form.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return await render(request, "message.html", {"title": "Nothing to do", "text": "No job id was given."}, 400)
    return job_id


def operator(request: Request) -> str:
    """Who the audit record names: the page's signed-in user."""
    return f"web:{_state(request).access.user}"


async def replay(request: Request) -> Response:
    from worker.tools.replay import replay_dead_letters

    job_id = await guarded_job_id(request)
    if isinstance(job_id, Response):
        return job_id
    web = _state(request)
    report = await replay_dead_letters(web.settings, DeadLetterFilter(job_ids=[job_id]), who=operator(request))
    if job_id in report.replayed:
        message = f"replayed {job_id}: it is back in the queue under the same job id"
    else:
        message = f"not replayed {job_id}: {report.skipped.get(job_id, 'no such dead letter')}"
    return RedirectResponse(f"/dead-letters?message={quote(message)}", status_code=303)


async def discard(request: Request) -> Response:
    job_id = await guarded_job_id(request)
    if isinstance(job_id, Response):
        return job_id
    web = _state(request)
    async with web.sessions() as session, session.begin():
        count = await delete_dead_letters(session, [job_id])
        message = f"discarded {job_id}" if count else f"no dead letter {job_id} to discard"
        await record_actions(
            session, who=operator(request), action="discard", queue=web.settings.queue, targets=[(job_id, message)]
        )
    return RedirectResponse(f"/dead-letters?message={quote(message)}", status_code=303)


CANDIDATES_SHOWN = 20
"""At most this many ids are listed for a start of an id that several ids share."""


async def trace_page(request: Request) -> Response:
    ident = request.query_params.get("id", "").strip()
    story = None
    candidates: list[str] = []
    if ident:
        web = _state(request)
        async with contextlib.AsyncExitStack() as stack:
            conn = await stack.enter_async_context(web.engine.connect())
            outbox = await _outbox_connection(web, stack)
            story = await trace(conn, web.redis, web.settings.queue, ident, outbox)
            if story is None:  # the start of an id, as the command line takes it
                candidates = await ids_starting_with(conn, web.redis, web.settings.queue, ident, limit=CANDIDATES_SHOWN)
                if len(candidates) == 1:
                    story = await trace(conn, web.redis, web.settings.queue, candidates[0], outbox)
    return await render(request, "trace.html", {"ident": ident, "story": story, "candidates": candidates})


async def _outbox_connection(web: WebState, stack: contextlib.AsyncExitStack) -> AsyncConnection | None:
    """A connection of its own to the outbox's database for the trace (a failed query there, say no
    `taskline_outbox` table, leaves the other connection usable); None when it cannot be reached:
    the rest of the story is still told."""
    try:
        return await stack.enter_async_context((web.outbox_engine or web.engine).connect())
    except Exception:
        return None


async def login(request: Request) -> Response:
    web = _state(request)
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if not web.access.enabled:
        text = (
            "This page is read-only: set TASKLINE_WEB_PASSWORD (and restart `taskline web`)"
            " to act on the queue and the dead letters."
        )
        return await render(request, "message.html", {"title": "Read-only", "text": text}, 403)
    if web.access.authenticated(request):
        return RedirectResponse(target, status_code=303)
    response = await render(
        request, "message.html", {"title": "Sign in", "text": "Sign in with TASKLINE_WEB_USER and its password."}, 401
    )
    response.headers["www-authenticate"] = 'Basic realm="taskline", charset="UTF-8"'
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def favicon(request: Request) -> Response:
    return RedirectResponse("/static/favicon.svg", status_code=301)
