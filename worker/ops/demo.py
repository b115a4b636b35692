"""`taskline demo`: a small stream of commands through the real queue, and what came of it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from taskline_producer import keys
from taskline_producer.client import TaskProducer
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, envelope, epoch_ms

from worker.settings import Settings
from worker.store.engine import make_engine, make_sessions

__all__ = ["run_demo"]


async def run_demo(settings: Settings, *, users: int, wait_s: float, console: Console) -> None:
    engine = make_engine(settings)
    sessions = make_sessions(engine)
    async with sessions() as session, session.begin():
        for user_id in range(1, users + 1):
            await session.exec(  # type: ignore[call-overload]
                sa.text(
                    'INSERT INTO "user" (id, email, hashed_password, name) VALUES (:id, :email, :pw, :name)'
                    " ON CONFLICT DO NOTHING"
                ),
                params={"id": user_id, "email": f"demo{user_id}@example.com", "pw": "!", "name": f"Demo {user_id}"},
            )
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
        while await producer.redis.zcard(settings.queue) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    async with sessions() as session:
        tasks = (
            await session.exec(
                sa.text(  # type: ignore[call-overload]
                    "SELECT id, user_id, title, description, completed FROM task WHERE id = ANY(:ids)"
                ),
                params={"ids": [task_a, task_b]},
            )
        ).all()
        letters = (
            await session.exec(
                sa.text(  # type: ignore[call-overload]
                    "SELECT job_id, reason FROM dead_letter WHERE job_id = :id"
                ),
                params={"id": invalid_id},
            )
        ).all()
    await engine.dispose()
    _show(console, tasks, letters)


def _show(console: Console, tasks: list[Any], letters: list[Any]) -> None:
    table = Table("task", "user", "title", "description", "completed", title="tasks the worker wrote")
    for row in tasks:
        table.add_row(
            str(row.id)[:8], str(row.user_id), row.title, row.description or "", "yes" if row.completed else "no"
        )
    console.print(table)
    for row in letters:
        console.print(f"dead letter {row.job_id[:8]}: {row.reason}", markup=False)
    if len(tasks) < 2:
        console.print("[yellow]the worker has not applied everything yet: is `taskline worker` running?[/yellow]")
