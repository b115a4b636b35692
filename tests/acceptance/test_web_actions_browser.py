"""Acting on the queue from the page, end to end: `taskline web` (the Procfile's process, with a
password) driven by Debian's Chromium, a real `taskline worker`, every action by its button:
pause and resume, delete, run now, replay and discard; each one shows in the Actions view.

Same needs as tests/acceptance/test_web_browser.py (whose fixtures it uses).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taskline_producer import keys
from taskline_producer.contract import CreateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms, job_of_command

from tests.acceptance.test_web_browser import (  # noqa: F401
    FAST,
    NEEDS_CHROMIUM,
    PASSWORD,
    _watch_console,
    browser,
    web_url,
)
from tests.conftest import wait_for
from worker.config.settings import Settings

pytestmark = [pytest.mark.acceptance, pytest.mark.browser, NEEDS_CHROMIUM]


async def _enqueue(redis, queue: str, *, delay_ms: int) -> str:
    command = CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title="t")
    job_id = str(command.command_id)
    await redis.eval(
        ENQUEUE_SCRIPT, 1, queue, epoch_ms() + delay_ms, DEFAULT_JOB_TTL_MS, job_id, job_of_command(command, 0)
    )
    return job_id


async def test_every_action_by_its_button_with_a_real_worker_and_each_recorded(
    settings: Settings,
    redis,
    db,
    users,
    start_worker,
    web_url: str,  # noqa: F811
    browser,  # noqa: F811
):
    """Pause sets the queue's pause key and shows on every page; resume clears it and a job sent
    meanwhile is applied; Delete turns a deferred job into a 'removed by an operator' dead
    letter; Run now makes a deferred job run at once; Replay puts the removed job back and the
    worker applies it; Discard removes a dead letter; the Actions view lists all six."""
    worker = start_worker(**FAST)
    await wait_for(lambda: "worker started" in worker.log(), timeout=30)
    context = await browser.new_context(http_credentials={"username": "admin", "password": PASSWORD})
    page = await context.new_page()
    errors: list[str] = []
    _watch_console(page, errors)
    queue = settings.queue

    async def applied(job_id: str) -> bool:
        return bool(await db.fetchval("SELECT 1 FROM processed_command WHERE command_id::text = $1", job_id))

    # Pause, from the overview: the banner shows everywhere, the worker claims nothing.
    await page.goto(web_url + "/")
    await page.click("button:has-text('Pause claiming')")
    assert "claiming paused" in await page.locator(".message").inner_text()
    await page.goto(web_url + "/dead-letters")
    assert "admin" in await page.locator("[data-paused]").inner_text()
    assert await redis.exists(keys.paused_key(queue))  # what the workers' claim path honours
    held = await _enqueue(redis, queue, delay_ms=0)
    await page.click("[data-paused] button:has-text('Resume claiming')")
    assert await page.locator("[data-paused]").count() == 0
    await wait_for(lambda: applied(held), timeout=30)

    # Delete a deferred job: it leaves the queue and becomes a dead letter saying who removed it.
    doomed = await _enqueue(redis, queue, delay_ms=600_000)
    await page.goto(web_url + "/queue?state=deferred")
    await page.locator(f"tr[data-job-id='{doomed}'] button:has-text('Delete')").click()
    assert "it is a dead letter now" in await page.locator(".message").inner_text()
    assert await page.locator(f"tr[data-job-id='{doomed}']").count() == 0
    await page.goto(f"{web_url}/dead-letters/{doomed}")
    assert "removed by an operator (web:admin)" in await page.locator("[data-field=reason]").inner_text()

    # Run now: a job deferred for ten minutes is applied at once.
    later = await _enqueue(redis, queue, delay_ms=600_000)
    await page.goto(web_url + "/queue?state=deferred")
    await page.locator(f"tr[data-job-id='{later}'] button:has-text('Run now')").click()
    assert "runs now" in await page.locator(".message").inner_text()
    await wait_for(lambda: applied(later), timeout=30)

    # Replay the removed job: the worker applies it; then discard another dead letter.
    await page.goto(f"{web_url}/dead-letters/{doomed}")
    await page.click("text=Replay (same job id)")
    assert "back in the queue" in await page.locator(".message").inner_text()
    await wait_for(lambda: applied(doomed), timeout=30)
    spare = await _enqueue(redis, queue, delay_ms=600_000)
    await page.goto(web_url + "/queue?state=deferred")
    await page.locator(f"tr[data-job-id='{spare}'] button:has-text('Delete')").click()
    await page.goto(f"{web_url}/dead-letters/{spare}")
    await page.click("text=Discard for good")
    assert f"discarded {spare}" in await page.locator(".message").inner_text()

    # The Actions view: who, when, what, for each.
    await page.goto(web_url + "/actions")
    rows = page.locator("table.operator-actions tr[data-action]")
    seen = {
        (await row.get_attribute("data-action"), await row.get_attribute("data-target")) for row in await rows.all()
    }
    for expected in (
        ("pause", ""),
        ("resume", ""),
        ("delete", doomed),
        ("run-now", later),
        ("replay", doomed),
        ("discard", spare),
    ):
        assert expected in seen, (expected, seen)
    assert "web:admin" in await rows.first.inner_text()
    await context.close()
    assert errors == [], errors
