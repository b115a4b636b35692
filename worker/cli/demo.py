"""`taskline demo`: a small stream of commands through the real queue, and what came of it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import uuid4

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from taskline_producer import keys
from taskline_producer.client import TaskProducer
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, envelope, epoch_ms

from worker.config.settings import Settings, redact_url
from worker.store.engine import make_engine, make_sessions
from worker.store.models import DeadLetter, Task, User, table_of

__all__ = ["DemoResult", "NoWorker", "check_worker", "run_demo"]


WORKER_LOOK_S: Final = 3.0
"""How long the demo looks for a worker's heartbeat before it says none is running."""


@dataclass(slots=True)
class DemoResult:
    """What the demo sent and what the worker made of it (`taskline demo --json` prints it)."""

    workers: int = 0
    queued: int = 0
    duplicates: int = 0
    tasks: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NoWorker(Exception):
    """No worker beats on the demo's queue: nothing would apply the commands."""


async def check_worker(settings: Settings, console: Console, look_s: float = WORKER_LOOK_S) -> int:
    """How many live workers beat on the queue; raises NoWorker, saying what to start, if none
    shows up within `look_s` (a worker that has just started may not have beaten yet)."""
    from worker.config.redis_connection import make_tool_redis
    from worker.tools.fleet import live_workers

    redis = make_tool_redis(settings.redis_url)
    deadline = time.monotonic() + look_s
    try:
        with console.status(f"looking for a live worker on queue {settings.queue}"):
            while not (workers := await live_workers(redis, settings.queue)) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    if not workers:
        raise NoWorker(
            f"no live worker on queue {settings.queue} (no fresh heartbeat in Redis at"
            f" {redact_url(settings.redis_url)}): start one in another terminal with `taskline worker`"
            " (same DATABASE_URL, REDIS_URL and TASKLINE_QUEUE), then run `taskline demo` again"
        )
    return len(workers)


async def run_demo(settings: Settings, *, users: int, wait_s: float, console: Console) -> DemoResult:
    """Send the demo stream and show what came of it on `console`; `complete` is False if the
    worker did not apply it all within `wait_s`. Raises NoWorker before sending anything when no
    worker is running."""
    engine = make_engine(settings)
    try:
        return await _demo(settings, engine, users=users, wait_s=wait_s, console=console)
    finally:
        await engine.dispose()


async def _demo(settings: Settings, engine: AsyncEngine, *, users: int, wait_s: float, console: Console) -> DemoResult:
    sessions = make_sessions(engine)
    demo_users = [
        {"id": n, "email": f"demo{n}@example.com", "hashed_password": "!", "name": f"Demo {n}"}
        for n in range(1, users + 1)
    ]
    async with sessions() as session, session.begin():
        await session.exec(insert(User).values(demo_users).on_conflict_do_nothing())
    workers = await check_worker(settings, console)  # after the database, so each says if it is down
    console.print(f"{workers} live worker(s) on queue {settings.queue}", highlight=False)
    now = datetime.now(UTC)
    task_a, task_b = uuid4(), uuid4()
    commands: list[Command] = [
        CreateTask(command_id=uuid4(), issued_at=now, task_id=task_a, user_id=1, title="Write the report"),
        CreateTask(
            command_id=uuid4(),
            issued_at=now,
            task_id=task_b,
            user_id=users,
            title="Book the venue",
            description="Room for 40",
        ),
        UpdateTask(
            command_id=uuid4(),
            issued_at=now + timedelta(milliseconds=1),
            task_id=task_a,
            user_id=1,
            description="Due Friday",
        ),
        CompleteTask(command_id=uuid4(), issued_at=now + timedelta(milliseconds=2), task_id=task_b, user_id=users),
    ]
    async with TaskProducer.connect(settings.redis_url, queue=settings.queue) as producer:
        report = await producer.send_many([*commands, commands[0]])  # the last one is a duplicate
        invalid_id = str(uuid4())
        bad = envelope("create_task", {"command_id": invalid_id, "user_id": "1", "title": ""}, epoch_ms())
        async with producer.redis.pipeline(transaction=True) as pipe:  # invalid, as another service might send it
            pipe.set(keys.job_key(invalid_id), bad, px=DEFAULT_JOB_TTL_MS)
            pipe.zadd(settings.queue, {invalid_id: epoch_ms()})
            await pipe.execute()
        console.print(f"sent {report.queued} commands, {len(report.duplicates)} refused as duplicate, 1 invalid")
    deadline = time.monotonic() + wait_s
    console.print(f"waiting up to {wait_s:g} s for the worker to apply them", highlight=False)
    with console.status("waiting"):
        while True:
            tasks, letters = await _results(sessions, [task_a, task_b], invalid_id)
            done = len(tasks) == 2 and all(row.completed or row.description for row in tasks) and bool(letters)
            if done or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
    result = DemoResult(
        workers=workers,
        queued=report.queued,
        duplicates=len(report.duplicates),
        tasks=[
            {
                "task_id": str(row.id),
                "user_id": row.user_id,
                "title": row.title,
                "description": row.description,
                "completed": row.completed,
            }
            for row in tasks
        ],
        dead_letters=[{"job_id": row.job_id, "reason": row.reason} for row in letters],
    )
    result.complete = _show(console, tasks, letters)
    return result


async def _results(sessions: Any, task_ids: list[Any], invalid_id: str) -> tuple[list[Any], list[Any]]:
    t, d = table_of(Task).c, table_of(DeadLetter).c
    async with sessions() as session:
        conn = await session.connection()
        shown = sa.select(t.id, t.user_id, t.title, t.description, t.completed).where(t.id.in_(task_ids))
        tasks = (await conn.execute(shown)).all()
        letters = (await conn.execute(sa.select(d.job_id, d.reason).where(d.job_id == invalid_id))).all()
    return list(tasks), list(letters)


def _show(console: Console, tasks: list[Any], letters: list[Any]) -> bool:
    table = Table("task", "user", "title", "description", "completed", title="tasks the worker wrote")
    for row in tasks:
        table.add_row(
            str(row.id)[:8], str(row.user_id), row.title, row.description or "", "yes" if row.completed else "no"
        )
    console.print(table)
    for row in letters:
        console.print(f"dead letter {row.job_id}: {row.reason}", markup=False, highlight=False)
    return len(tasks) == 2 and bool(letters)
