"""The TypeScript client against the real worker loop: what a producer learns when it sends a
command again, or reuses a command_id for another command."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import run_burst, wait_for
from tests.node_producer import built_package

pytestmark = pytest.mark.integration

SEND = """
import { createClient } from "redis";
import { TaskProducer, completeTaskCommand, createTaskCommand } from "./dist/index.js";
const client = createClient({ url: process.env.REDIS_URL });
await client.connect();
const producer = new TaskProducer(client, { queue: process.env.QUEUE });
const ids = { commandId: process.env.COMMAND_ID, taskId: process.env.TASK_ID, userId: 1 };
const command = process.env.KIND === "create"
  ? createTaskCommand({ ...ids, title: "from node", issuedAt: process.env.ISSUED_AT })
  : completeTaskCommand({ ...ids, issuedAt: process.env.ISSUED_AT });
const receipt = await producer.send(command, { outcomeTtl: 60 });
const outcome = await receipt.outcome({ timeoutMs: 60_000 });
console.log(JSON.stringify({ queued: receipt.queued, outcome }));
await client.close();
"""


async def send_from_node(settings: Any, redis_url: str, redis: Any, kind: str, ids: dict[str, str]) -> Any:
    """Send one command from node, run a burst worker while it waits, and return what it printed."""
    env = {**os.environ, "REDIS_URL": redis_url, "QUEUE": settings.queue, "KIND": kind, **ids}
    process = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "-e", SEND, cwd=built_package(), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await wait_for(lambda: redis.zscore(settings.queue, ids["COMMAND_ID"]), timeout=30)
    await run_burst(settings)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout)


async def test_node_learns_duplicate_for_a_resend_and_dead_letter_for_a_reused_command_id(
    settings, redis_url, redis, db, users
):
    """From the TypeScript client: a create is `applied`; the same create sent again is queued anew
    and reports `duplicate` (not the earlier `applied`); a complete_task under the create's
    command_id reports `dead_letter` saying the id was reused, and the task stays open."""
    ids = {"COMMAND_ID": str(uuid4()), "TASK_ID": str(uuid4()), "ISSUED_AT": "2026-12-07T22:00:00.000Z"}
    first = await send_from_node(settings, redis_url, redis, "create", ids)
    assert (first["queued"], first["outcome"]["state"]) == (True, "applied")
    again = await send_from_node(settings, redis_url, redis, "create", ids)
    assert (again["queued"], again["outcome"]["state"]) == (True, "duplicate")
    reused = await send_from_node(settings, redis_url, redis, "complete", ids)
    assert reused["outcome"]["state"] == "dead_letter"
    assert reused["outcome"]["reason"].startswith("command_id reused")
    assert await db.fetchval("SELECT completed FROM task WHERE id = $1::uuid", ids["TASK_ID"]) is False
