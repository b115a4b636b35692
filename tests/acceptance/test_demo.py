"""`taskline demo`: it checks for a live worker first, and says what to start when there is none."""

from __future__ import annotations

import time

import pytest

from tests.acceptance.test_worker_process import run_cli, started

pytestmark = pytest.mark.acceptance


def test_without_a_worker_the_demo_says_what_to_start_and_fails_at_once(settings, redis_url, database_url):
    """No heartbeat on the queue: the demo exits 1 within seconds, naming `taskline worker`,
    and sends nothing."""
    began = time.monotonic()
    result = run_cli(settings, "taskline", "demo")
    took = time.monotonic() - began
    assert result.returncode == 1, result.stdout
    assert "no live worker" in result.stderr
    assert "taskline worker" in result.stderr
    assert "sent" not in result.stdout
    assert took < 15, took


async def test_with_a_worker_the_demo_shows_the_tasks_and_the_dead_letter(settings, redis, start_worker):
    """With a worker running, the demo exits 0 and shows the invalid command's reason in the
    command's own terms, with its whole job id."""
    await started(start_worker())
    result = run_cli(settings, "taskline", "demo", "--wait", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 live worker(s)" in result.stdout
    assert "Write the report" in result.stdout
    assert "dead letter " in result.stdout
    assert "command.user_id" in result.stdout, result.stdout
    assert "a[0]" not in result.stdout, result.stdout
