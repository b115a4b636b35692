"""The TypeScript client's outcome wait against a real Redis, with this test playing the worker.

The test writes outcomes exactly as docs/contract.md ("Outcomes") has the worker write them (SET
the outcome with EX; on a final state RPUSH a token onto the done list and EXPIRE it, in the same
MULTI), while node processes block in `receipt.outcome()`. It needs no worker, so it pins the client's side of
the protocol on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import wait_for
from tests.node_producer import built_package

pytestmark = pytest.mark.integration

WAITERS = """
import { createClient } from "redis";
import { TaskProducer } from "./dist/index.js";
const commandId = process.env.COMMAND_ID;
const [waiters, timeoutMs] = [Number(process.env.WAITERS), Number(process.env.TIMEOUT_MS)];
const client = createClient({ url: process.env.REDIS_URL });
await client.connect();
const producer = new TaskProducer(client);
const started = Date.now();
const outcomes = await Promise.all(
  Array.from({ length: waiters }, () => producer.outcome(commandId, { timeoutMs })),
);
console.log(JSON.stringify({ outcomes, elapsedMs: Date.now() - started }));
await client.close();
"""


def document(command_id: str, state: str, reason: str | None = None) -> str:
    return json.dumps(
        {
            "command_id": command_id,
            "job_id": command_id,
            "state": state,
            "reason": reason,
            "at": datetime.now(UTC).isoformat(),
            "next_try_at": None,
        }
    )


async def record(redis: Any, command_id: str, state: str, reason: str | None = None) -> None:
    """Write an outcome the way the worker does (docs/contract.md, "Outcomes")."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(f"taskline:outcome:{command_id}", document(command_id, state, reason), ex=60)
        if state in {"applied", "duplicate", "dead_letter"}:
            pipe.rpush(f"taskline:outcome:{command_id}:done", state)
            pipe.expire(f"taskline:outcome:{command_id}:done", 60)
        else:
            pipe.delete(f"taskline:outcome:{command_id}:done")
        await pipe.execute()


async def start_waiters(redis_url: str, command_id: str, waiters: int, timeout_ms: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "COMMAND_ID": command_id,
        "WAITERS": str(waiters),
        "TIMEOUT_MS": str(timeout_ms),
    }
    return await asyncio.create_subprocess_exec(
        "node",
        "--input-type=module",
        "-e",
        WAITERS,
        cwd=built_package(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def result_of(process: asyncio.subprocess.Process) -> Any:
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


async def blocked_on_blmove(redis: Any) -> int:
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    return sum(1 for c in await redis.client_list() if c.get("cmd") == "blmove" and int(c.get("db", -1)) == db)


async def test_every_waiter_wakes_on_the_final_outcome_and_the_token_stays(redis, redis_url):
    """Three waiters blocked in BLMOVE all get `applied` as soon as it is written; the token stays for others."""
    command_id = str(uuid4())
    await redis.set(f"arq:job:{command_id}", "{}", ex=60)
    process = await start_waiters(redis_url, command_id, waiters=3, timeout_ms=30_000)
    await wait_for(lambda: _at_least(blocked_on_blmove(redis), 3), timeout=30)
    await record(redis, command_id, "retrying", "the task does not exist yet")
    await record(redis, command_id, "applied")
    result = await result_of(process)
    assert [o["state"] for o in result["outcomes"]] == ["applied"] * 3
    assert all(o["final"] and not o["timedOut"] for o in result["outcomes"])
    assert result["elapsedMs"] < 25_000
    assert await redis.lrange(f"taskline:outcome:{command_id}:done", 0, -1) == [b"applied"]


async def test_a_dead_letter_reaches_the_waiter_with_its_reason(redis, redis_url):
    """A dead_letter outcome ends the wait and carries the worker's reason."""
    command_id = str(uuid4())
    await redis.set(f"arq:in-progress:{command_id}", "1", ex=60)
    process = await start_waiters(redis_url, command_id, waiters=1, timeout_ms=30_000)
    await wait_for(lambda: _at_least(blocked_on_blmove(redis), 1), timeout=30)
    await record(redis, command_id, "dead_letter", "conflict: the task exists, created by another command")
    (outcome,) = (await result_of(process))["outcomes"]
    assert (outcome["state"], outcome["reason"]) == (
        "dead_letter",
        "conflict: the task exists, created by another command",
    )


async def test_without_a_final_outcome_the_wait_ends_at_its_timeout_with_the_last_state(redis, redis_url):
    """No final outcome: after the timeout the waiter reports the last state seen (retrying), timed out."""
    command_id = str(uuid4())
    await redis.set(f"arq:job:{command_id}", "{}", ex=60)
    await record(redis, command_id, "retrying", "the task does not exist yet")
    result = await result_of(await start_waiters(redis_url, command_id, waiters=1, timeout_ms=1_200))
    (outcome,) = result["outcomes"]
    assert (outcome["state"], outcome["timedOut"], outcome["reason"]) == (
        "retrying",
        True,
        "the task does not exist yet",
    )
    assert 1_200 <= result["elapsedMs"] < 10_000


async def _at_least(count: Any, wanted: int) -> bool:
    return bool(await count >= wanted)
