"""The `web` process from the Procfile, driven by a real headless Chromium (Debian's package),
with a real `worker` process applying the commands the test sends.

Needs /usr/bin/chromium (`apt-get install chromium`; scripts/services.sh installs it) and the
playwright Python package (a dev dependency), which drives that browser: no browser is
downloaded. The screenshot is kept under .run/artifacts/.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import TaskProducer
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms

from tests.conftest import ROOT, procfile_command, wait_for, worker_env
from worker.config.settings import Settings

CHROMIUM = Path(os.environ.get("TASKLINE_TEST_CHROMIUM", "/usr/bin/chromium"))
playwright_api = pytest.importorskip("playwright.async_api")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)
pytestmark = [pytest.mark.acceptance, pytest.mark.browser, NEEDS_CHROMIUM]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / ".run" / "artifacts"
FAST = {"TASKLINE_HEARTBEAT_INTERVAL": "0.5", "TASKLINE_HISTORY_SAMPLE_S": "1"}
PASSWORD = "correct horse battery staple"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serving(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def web_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`web: taskline web` from the Procfile, with a password for replay and discard."""
    port = _free_port()
    env = worker_env(settings, TASKLINE_WEB_PORT=str(port), TASKLINE_WEB_PASSWORD=PASSWORD, **FAST)
    log_path = tmp_path / "web.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(procfile_command("web"), env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not _serving(port):
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "taskline web did not listen within 30 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then re-raises the signal (its exit status says SIGTERM).
    assert process.wait(30) in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


def _watch_console(page: Any, errors: list[str]) -> None:
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))


async def _number(page: Any, metric: str) -> float | None:
    text = (await page.locator(f"[data-metric={metric}]").inner_text()).replace(",", "").strip()
    return None if text in ("-", "?", "") else float(text)


async def test_the_page_follows_the_fleet_shows_dead_letters_and_traces_commands_and_tasks(
    settings: Settings, redis, db, users, start_worker, web_url: str, browser
):
    """Needs the password; loads without console errors; its numbers move as a real worker applies
    commands; a bad command shows as a dead letter with its reason and payload; the trace finds
    the command and its task; replay needs the form's CSRF token. Keeps a screenshot."""
    worker = start_worker(**FAST)
    await wait_for(lambda: "worker started" in worker.log(), timeout=30)
    errors: list[str] = []
    anonymous = await browser.new_context()
    assert (await anonymous.request.get(web_url + "/")).status == 401  # with a password, reading needs it too
    await anonymous.close()
    context = await browser.new_context(
        viewport={"width": 1360, "height": 1000}, http_credentials={"username": "admin", "password": PASSWORD}
    )
    page = await context.new_page()
    _watch_console(page, errors)
    await page.goto(web_url + "/")
    await page.wait_for_selector("table.workers td.state.ready", timeout=15_000)
    before = await _number(page, "applied") or 0.0

    # Numbers move: 40 commands through the producer, applied by the worker process.
    producer = TaskProducer(redis, queue=settings.queue)
    receipts = [await producer.create_task(user_id=1, title=f"from the browser test {n}") for n in range(40)]
    task_id = receipts[0].task_id
    renamed = await producer.update_task(task_id=task_id, user_id=1, title="renamed in the browser test")

    async def applied_moved() -> bool:
        return (await _number(page, "applied") or 0.0) >= before + 41

    await wait_for(applied_moved, timeout=30, interval=0.25)

    async def rate_shown() -> bool:
        return (await _number(page, "rate_minute") or 0.0) > 0

    await wait_for(rate_shown, timeout=30, interval=0.25)
    assert await page.locator("svg.chart polyline, svg.chart circle").count() > 0

    # A bad command: a create_task without its title becomes a dead letter with a reason.
    bad_id = str(uuid4())
    bad = {"command_id": bad_id, "issued_at": "2026-11-29T10:00:00Z", "task_id": str(uuid4()), "user_id": 1}
    await redis.eval(
        ENQUEUE_SCRIPT,
        1,
        settings.queue,
        epoch_ms(),
        DEFAULT_JOB_TTL_MS,
        bad_id,
        envelope("create_task", bad, epoch_ms()),
    )
    await wait_for(lambda: db.fetchval("SELECT reason FROM dead_letter WHERE job_id = $1", bad_id), timeout=30)

    async def dead_letter_tile_counts_it() -> bool:
        return (await _number(page, "dead_letters") or 0.0) >= 1

    await wait_for(dead_letter_tile_counts_it, timeout=30, interval=0.25)
    screenshot = ARTIFACTS / "web-overview.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    await page.click("nav a[href='/queue']")
    for kind in ("running", "ready", "deferred"):
        await page.click(f"nav.tabs a[data-state={kind}]")
        await page.locator(f"table[data-jobs={kind}]").wait_for(timeout=10_000)
    await page.click("text=Dead letters")
    row = page.locator(f"tr[data-job-id='{bad_id}']")
    await row.wait_for(timeout=10_000)
    assert "title" in (await row.locator("td.reason").inner_text())
    await page.fill("input[name=function]", "update_task")
    await page.click("text=Filter")
    assert await page.locator(f"tr[data-job-id='{bad_id}']").count() == 0  # the filter works
    await page.goto(f"{web_url}/dead-letters/{bad_id}")
    assert "title" in await page.locator("[data-field=reason]").inner_text()
    assert bad_id in await page.locator("pre.payload").inner_text()
    stale = await page.request.post(f"{web_url}/actions/replay", form={"job_id": bad_id, "csrf": "x"})
    assert stale.status == 403
    assert "CSRF" in await stale.text()

    # The trace finds the command (applied, by which worker, in which transaction) and the task.
    await page.fill("input[name=id]", str(renamed.command_id))
    await page.click("button:has-text('Trace')")
    assert "applied" in await page.locator("[data-trace=command]").inner_text()
    await page.click(f"a:has-text('{task_id}')")
    await page.wait_for_selector("[data-trace=task]")
    assert await page.locator("[data-field=title]").inner_text() == "renamed in the browser test"
    won = await page.locator("table.commands td.won").all_inner_texts()
    assert sorted(won) == ["description", "title"]  # the create set the description, the update the title
    await page.goto(f"{web_url}/trace?id={bad_id}")
    assert "dead-lettered" in await page.locator("[data-trace=command]").inner_text()

    # The replay form carries the CSRF token (a POST without it was refused above).
    no_token = await page.request.post(f"{web_url}/actions/replay", form={"job_id": bad_id})
    assert no_token.status == 403
    await page.goto(f"{web_url}/dead-letters/{bad_id}")
    await page.click("text=Replay (same job id)")
    assert re.search(r"replayed \S+: it is back in the queue", await page.locator(".message").inner_text())
    await context.close()

    assert errors == [], errors
