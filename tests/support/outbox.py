"""The outbox in tests and the benchmark: the table made (from the producer's SQL file) in a
database, emptied, and read back; valid commands for it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
from taskline_producer.contract import Command, CreateTask, UpdateTask, dumps
from taskline_producer.outbox import outbox_sql
from taskline_producer.wire import wire_argument


async def reset_outbox(url: str) -> None:
    """`taskline_outbox` exists in the database at `url` and is empty."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(outbox_sql())
        await conn.execute("TRUNCATE taskline_outbox RESTART IDENTITY")
    finally:
        await conn.close()


async def insert_commands(conn: asyncpg.Connection, commands: list[Command]) -> None:
    """The plain INSERT of docs/outbox.md, many rows at once (COPY would do as well)."""
    await conn.executemany(
        "INSERT INTO taskline_outbox (function, command) VALUES ($1, $2::jsonb)",
        [(c.function, dumps(wire_argument(c)).decode()) for c in commands],
    )


def creates_and_updates(count: int, users: int = 20, seed: int = 1) -> list[Command]:
    """`count` valid commands: creates, each followed by an update of the same task."""
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(minutes=5)
    commands: list[Command] = []
    while len(commands) < count:
        n = len(commands)
        task_id, user_id = uuid4(), rng.randint(1, users)
        at = base + timedelta(milliseconds=n)
        commands.append(CreateTask(command_id=uuid4(), issued_at=at, task_id=task_id, user_id=user_id, title=f"t{n}"))
        if len(commands) < count:
            commands.append(
                UpdateTask(
                    command_id=uuid4(),
                    issued_at=at + timedelta(microseconds=1),
                    task_id=task_id,
                    user_id=user_id,
                    title=f"t{n} v2",
                )
            )
    return commands
