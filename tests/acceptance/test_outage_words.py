"""What a worker process says when Redis or PostgreSQL cannot be reached: once, at WARNING, naming
the setting and the URL without its password, with what to check; and it keeps trying."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

CLOSED = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_a_worker_started_without_redis_says_so_once_and_keeps_trying(start_worker):
    """REDIS_URL pointing nowhere: one WARNING naming REDIS_URL and the redacted URL, no countdown,
    no "connection lost" for a connection it never had, and the process stays up."""
    worker = start_worker(REDIS_URL=f"redis://:hunter2@{CLOSED}/0")

    def warned() -> list[dict[str, Any]]:
        return [line for line in _lines(worker.log()) if line.get("level") == "warning"]

    await wait_for(warned, timeout=20)
    await asyncio.sleep(3)  # several reconnect attempts happen in these seconds (backoff 0.5, 1, 2 s)
    assert worker.proc.poll() is None, worker.log()
    warnings = warned()
    assert len(warnings) == 1, warnings
    event = warnings[0]["event"]
    assert "cannot reach Redis" in event
    assert "REDIS_URL" in event
    assert CLOSED in event
    assert "next_step" in warnings[0]
    text = worker.log()
    assert "hunter2" not in text
    assert "retries remaining" not in text
    assert "lost" not in text


async def test_a_worker_started_without_postgresql_says_so_once_at_warning(start_worker, settings):
    """DATABASE_URL pointing nowhere: one WARNING naming DATABASE_URL at start-up, the worker runs on."""
    url = settings.database_url.replace("127.0.0.1:5432", CLOSED)
    assert CLOSED in url
    worker = start_worker(DATABASE_URL=url)

    def warned() -> list[dict[str, Any]]:
        return [line for line in _lines(worker.log()) if line.get("level") == "warning"]

    await wait_for(warned, timeout=20)
    assert worker.proc.poll() is None, worker.log()
    warning = warned()[0]
    assert "cannot reach PostgreSQL" in warning["event"]
    assert "DATABASE_URL" in warning["event"]
    assert len([line for line in warned() if "PostgreSQL" in line["event"]]) == 1
