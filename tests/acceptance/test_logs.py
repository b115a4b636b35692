"""The worker's log: one JSON object per line (arq's own lines too), job lines that carry
command_id, task_id, function and try, and never a password or a payload."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import pytest
from taskline_producer import TaskProducer
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms

from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


def with_password(url: str, user: str, password: str) -> str:
    """The URL with user:password; the local services accept any password (trust auth for
    PostgreSQL, a `nopass` default user in Redis), so the worker runs normally with it."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def test_logs_are_json_with_job_fields_and_never_carry_passwords_or_payloads(
    settings, redis, db, users, start_worker
):
    marker = f"Marker-{secrets.token_hex(6)}"  # the distinctive text of every title sent below
    db_password = f"DbPw-{secrets.token_hex(6)}"
    redis_password = f"RedisPw-{secrets.token_hex(6)}"
    worker = start_worker(
        DATABASE_URL=with_password(settings.database_url, "postgres", db_password),
        REDIS_URL=with_password(settings.redis_url, "default", redis_password),
        TASKLINE_LOG_LEVEL="DEBUG",  # the most the worker ever logs
        TASKLINE_HEARTBEAT_INTERVAL="0.5",
    )
    await wait_for(lambda: worker.proc.poll() is not None or "heartbeat written" in worker.log(), timeout=30)
    assert worker.proc.poll() is None, worker.log()

    producer = TaskProducer(redis, queue=settings.queue)
    issued = datetime.now(UTC) - timedelta(minutes=1)
    applied = await producer.create_task(user_id=1, title=f"{marker} applied", issued_at=issued)
    # Someone else's task: refused, dead-lettered (the reason is logged, the title must not be).
    forbidden = await producer.update_task(task_id=applied.task_id, user_id=2, title=f"{marker} forbidden")
    # A task that does not exist (yet): retried, logged each time.
    missing = await producer.update_task(task_id=uuid4(), user_id=3, title=f"{marker} missing")

    async def raw(job_id: str, body: bytes, score: int | None = None) -> None:
        await redis.eval(ENQUEUE_SCRIPT, 1, settings.queue, score or epoch_ms(), DEFAULT_JOB_TTL_MS, job_id, body)

    too_long = {
        "command_id": str(uuid4()),
        "issued_at": issued.isoformat(),
        "task_id": str(uuid4()),
        "user_id": 1,
        "title": marker * 40,
    }
    await raw(too_long["command_id"], envelope("create_task", too_long, epoch_ms()))
    broken_id = str(uuid4())
    await raw(broken_id, b'{"f": "create_task", "a": [{"title": "' + marker.encode() + b'"')
    expired_id = str(uuid4())
    await redis.zadd(settings.queue, {expired_id: epoch_ms()})  # no job key: the runner dead-letters it as expired

    dead = [str(forbidden.command_id), too_long["command_id"], broken_id, expired_id]

    async def settled() -> bool:
        count = await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = ANY($1::text[])", dead)
        applied_rows = await db.fetchval("SELECT count(*) FROM task WHERE id = $1", applied.task_id)
        return bool(count == len(dead) and applied_rows == 1 and "command will be retried" in worker.log())

    await wait_for(settled, timeout=60)
    assert worker.stop() == 0
    text = worker.log()

    lines: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pytest.fail(f"log line {number} is not JSON: {line[:200]}")

    for secret in (db_password, redis_password, marker):
        assert secret not in text, f"{secret!r} leaked into the log"

    assert any(
        line.get("job_id") == expired_id and line["event"] == "dead-lettered" and "expired" in line["reason"]
        for line in lines
    ), "the expired job's dead letter was not logged as JSON with its reason"

    def job_lines(command_id: Any) -> list[dict[str, Any]]:
        return [line for line in lines if line.get("command_id") == str(command_id)]

    for command_id, event in (
        (forbidden.command_id, "dead-lettered"),
        (missing.command_id, "command will be retried"),
        (applied.command_id, "command applied"),
    ):
        found = [line for line in job_lines(command_id) if line["event"] == event]
        assert found, f"no {event!r} line for {command_id}"
        for line in found:
            assert {"job_id", "command_id", "task_id", "function", "try", "level", "timestamp"} <= set(line), line
            assert isinstance(line["try"], int)
    assert all("attempt" not in line for line in lines)
