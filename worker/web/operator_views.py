"""The page's handlers for acting on the queue: the paged, filtered Queue view, delete and run
now on one job, pause and resume for the whole queue, and the Actions view (the audit records).

Every change is a POST behind the password and the CSRF token (worker/web/auth.py, through
`views.refused`), and is recorded in `operator_action` by the tool that makes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from worker.store.operator_actions import ACTIONS, find_actions
from worker.tools.queue_actions import ActionResult, delete_queued_job, pause_claiming, resume_claiming, run_now
from worker.tools.queue_view import SCAN_MAX, SHOWN, STATES, QueueFilter, queue_page
from worker.web.state import WebState
from worker.web.views import operator, refused, render

__all__ = ["actions_page", "delete_job", "pause", "queue_view", "resume", "run_job_now"]

ACTIONS_SHOWN: Final = 50


def _web(request: Request) -> WebState:
    web: WebState = request.app.state.web
    return web


def _offset(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("offset", "0")))
    except ValueError:
        return 0


def _back(request: Request, form: Any, message: str, default: str = "/queue") -> Response:
    """Back to the page the form was on (a path on this site), with the message."""
    target = form.get("back") if form is not None else None
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        target = default
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}message={quote(message)}", status_code=303)


async def queue_view(request: Request) -> Response:
    params = {name: request.query_params.get(name, "").strip() for name in ("state", "function", "user", "task")}
    state = params["state"] if params["state"] in STATES else "ready"
    params["state"] = state
    where = QueueFilter(
        state=state, function=params["function"] or None, user_id=params["user"] or None, task_id=params["task"] or None
    )
    web = _web(request)
    page = await queue_page(web.redis, web.settings.queue, where, offset=_offset(request), limit=SHOWN)
    query = {k: v for k, v in params.items() if v}
    next_url = f"/queue?{urlencode({**query, 'offset': page.next_offset})}" if page.next_offset is not None else None
    previous = max(0, page.offset - SHOWN) if page.offset and not where.narrows else None
    previous_url = f"/queue?{urlencode({**query, 'offset': previous})}" if previous is not None else None
    here = f"/queue?{urlencode({**query, 'offset': page.offset})}"
    context = {
        "page": page,
        "params": params,
        "states": STATES,
        "next_url": next_url,
        "previous_url": previous_url,
        "first_url": f"/queue?{urlencode(query)}" if page.offset else None,
        "here": here,
        "scan_max": SCAN_MAX,
    }
    return await render(request, "queue.html", context)


async def delete_job(request: Request) -> Response:
    asked = await _job_action(request)
    if isinstance(asked, Response):
        return asked
    form, job_id = asked
    web = _web(request)
    result = await delete_queued_job(
        web.redis,
        web.sessions,
        web.settings.queue,
        job_id,
        who=operator(request),
        max_payload_bytes=web.settings.max_payload_bytes,
    )
    return _back(request, form, result.message)


async def run_job_now(request: Request) -> Response:
    asked = await _job_action(request)
    if isinstance(asked, Response):
        return asked
    form, job_id = asked
    web = _web(request)
    result = await run_now(web.redis, web.sessions, web.settings.queue, job_id, who=operator(request))
    return _back(request, form, result.message)


async def _job_action(request: Request) -> tuple[Any, str] | Response:
    """The form and the job id of an action on one job, once the request passed the page's guards;
    else the page that refuses it."""
    form, refusal = await refused(request)
    if refusal is not None:
        return refusal
    job_id = await _job_id_of(request, form)
    if isinstance(job_id, Response):
        return job_id
    return form, job_id


async def _job_id_of(request: Request, form: Any) -> str | Response:
    job_id = form.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        return await render(request, "message.html", {"title": "Nothing to do", "text": "No job id was given."}, 400)
    return job_id


async def pause(request: Request) -> Response:
    return await _change_claiming(request, pause_claiming)


async def resume(request: Request) -> Response:
    return await _change_claiming(request, resume_claiming)


async def _change_claiming(request: Request, change: Callable[..., Awaitable[ActionResult]]) -> Response:
    """Pause or resume claiming (`change`), once the request passed the page's guards."""
    form, refusal = await refused(request)
    if refusal is not None:
        return refusal
    web = _web(request)
    result = await change(web.redis, web.settings.queue, operator(request), web.sessions)
    return _back(request, form, result.message, default="/")


async def actions_page(request: Request) -> Response:
    action = request.query_params.get("action", "").strip()
    target = request.query_params.get("target", "").strip()
    offset = _offset(request)
    web = _web(request)
    async with web.sessions() as session:
        rows = await find_actions(
            session,
            queue=web.settings.queue,
            action=action if action in ACTIONS else None,
            target=target or None,
            limit=ACTIONS_SHOWN + 1,
            offset=offset,
        )
    query = {k: v for k, v in (("action", action), ("target", target)) if v}
    more = len(rows) > ACTIONS_SHOWN
    context = {
        "rows": rows[:ACTIONS_SHOWN],
        "params": {"action": action, "target": target},
        "actions": ACTIONS,
        "next_url": f"/actions?{urlencode({**query, 'offset': offset + ACTIONS_SHOWN})}" if more else None,
        "previous_url": f"/actions?{urlencode({**query, 'offset': max(0, offset - ACTIONS_SHOWN)})}"
        if offset
        else None,
    }
    return await render(request, "actions.html", context)
