"""Fair turns with a real worker process: under a flood the others' commands are applied early,
a rate limit defers a key's commands without dropping any, and a job without a key is claimed.
Orders are read from the database (the order commands were applied), never from timings."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from taskline_producer import TaskProducer, keys
from taskline_producer.contract import CreateTask

from tests.conftest import taskline, wait_for
from worker.config.settings import Settings

pytestmark = pytest.mark.acceptance

ONE_AT_A_TIME = {"TASKLINE_MAX_JOBS": "1"}


def _create(user_id: int, title: str = "t") -> CreateTask:
    return CreateTask(
        command_id=uuid.uuid4(), issued_at=datetime.now(UTC), task_id=uuid.uuid4(), user_id=user_id, title=title
    )


async def _applied_in_order(db: Any, commands: list[CreateTask]) -> list[uuid.UUID]:
    rows = await db.fetch(
        "SELECT command_id FROM processed_command WHERE command_id = ANY($1::uuid[]) ORDER BY processed_at, command_id",
        [c.command_id for c in commands],
    )
    return [row["command_id"] for row in rows]


async def _count(db: Any, commands: list[CreateTask]) -> int:
    return len(await _applied_in_order(db, commands))


async def test_under_a_flood_the_other_users_commands_are_applied_among_the_first(
    settings: Settings, redis, db, users, start_worker
):
    """User 1 sends 120 commands, then users 2 and 3 send 3 each, and one command comes without a
    key (fair=False, arq's layout), all before the worker starts. With one job at a time, the
    keyless command is applied first, and the six other users' commands among the first 12
    (without fair turns they would be the last six); every command is applied exactly once and
    nothing is dead-lettered."""
    fair = TaskProducer(redis, queue=settings.queue, fair=True)
    flood = [_create(1) for _ in range(120)]
    others = [_create(2) for _ in range(3)] + [_create(3) for _ in range(3)]
    keyless = _create(4)
    await fair.send_many(flood)
    await fair.send_many(others)
    await TaskProducer(redis, queue=settings.queue, fair=False).send(keyless)
    everything = [*flood, *others, keyless]

    start_worker(**ONE_AT_A_TIME)
    await wait_for(lambda: _equals(_count(db, everything), len(everything)), timeout=90, interval=0.2)

    order = await _applied_in_order(db, everything)
    assert len(order) == len(set(order)) == len(everything)
    assert order[0] == keyless.command_id
    positions = sorted(order.index(c.command_id) for c in others)
    assert positions[-1] < 12, positions
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0
    assert await redis.exists(keys.fair_turns_key(settings.queue), keys.fair_lane_key(settings.queue, "user:1")) == 0


async def test_a_rate_limit_defers_a_keys_commands_and_drops_none(settings: Settings, redis, db, users, start_worker):
    """`taskline fairness limit user:5 --rate 5 --burst 5`, then 30 commands of user 5 and 5 of
    user 6: user 6's are applied as soon as the worker runs; user 5's take at least (30 - 5) / 5
    = 5 s (the limit holds them in their lane, it never drops them); all 35 are applied once,
    none is dead-lettered, and `taskline fairness show` saw user 5 held while it waited."""
    limited = await taskline(settings, "fairness", "limit", "user:5", "--rate", "5", "--burst", "5")
    assert limited.returncode == 0, limited.stderr
    producer = TaskProducer(redis, queue=settings.queue, fair=True)
    slow = [_create(5) for _ in range(30)]
    quick = [_create(6) for _ in range(5)]
    await producer.send_many(slow)
    await producer.send_many(quick)

    started = time.monotonic()
    start_worker()
    await wait_for(lambda: _equals(_count(db, quick), 5), timeout=60, interval=0.05)
    held_seen: list[str] = []

    async def held_shown_or_done() -> bool:
        # A reading is a snapshot: the key is held between its tokens and waiting at a token, and a
        # busy machine may start `taskline` late; look until one reading shows it held.
        shown = await taskline(settings, "fairness", "show")
        if "held: user:5" in shown.stdout:
            held_seen.append(shown.stdout)
            return True
        return await _count(db, slow) == 30

    await wait_for(held_shown_or_done, timeout=60, interval=0.1)
    await wait_for(lambda: _equals(_count(db, slow), 30), timeout=60, interval=0.1)
    took = time.monotonic() - started

    assert took >= 5 - 0.05, f"30 commands at 5/s with a burst of 5 were applied in {took:.2f}s"
    assert held_seen, "no reading of `taskline fairness show` saw user:5 held while its commands waited"
    assert len(set(await _applied_in_order(db, slow + quick))) == 35
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
