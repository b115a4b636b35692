"""Node.js sends, a real worker applies: the TypeScript producer (`@taskline/producer`) end to end.

Each test runs a small ES module under node against the test's Redis database and queue, while
the Procfile's `worker` process applies what it sends to the test's PostgreSQL database.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.acceptance.test_worker_process import started
from tests.conftest import wait_for
from tests.node_producer import node_json

pytestmark = pytest.mark.acceptance

PRELUDE = """
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import * as taskline from "./dist/index.js";
const plan = JSON.parse(readFileSync(0, "utf8"));
const at = (seconds) => new Date(Date.parse(plan.base) + seconds * 1000);
const client = createClient({ url: process.env.REDIS_URL });
client.on("error", (error) => console.error("redis:", error.message));
await client.connect();
const producer = new taskline.TaskProducer(client, { queue: process.env.TASKLINE_QUEUE });
const out = {};
try {
  await main();
} finally {
  await client.close();
}
console.log(JSON.stringify(out));
"""

SEND = """
async function main() {
  const { createTaskCommand } = taskline;
  out.created = await producer.createTask({ userId: 1, title: "From Node.js", taskId: plan.a, issuedAt: at(0) });
  const description = "via @taskline/producer";
  out.updated = await producer.updateTask({ taskId: plan.a, userId: 1, description, issuedAt: at(1) });
  out.completed = await producer.completeTask({ taskId: plan.a, userId: 1, issuedAt: at(2) });
  const bulk = await producer.sendBulk([
    createTaskCommand({ userId: 2, title: "Bulk B", taskId: plan.b, issuedAt: at(0) }),
    createTaskCommand({ userId: 3, title: "Bulk C", description: "ünïcødé 😀 \\u2028", taskId: plan.c }),
  ]);
  out.bulk = { jobId: bulk.jobId, queued: bulk.queued, receipts: bulk.receipts };
  const twice = createTaskCommand({ userId: 4, title: "Sent twice", taskId: plan.d, issuedAt: at(0) });
  const many = await producer.sendMany([twice, twice]);
  out.many = { queued: many.queued, duplicates: many.duplicates, receipts: many.receipts };
}
"""

RESEND = """
async function main() {
  // The same command id again, after it was applied: Redis takes the job, the worker ignores it.
  out.again = await producer.createTask({ userId: 1, title: "Changed?", taskId: plan.a, commandId: plan.command_id });
}
"""


def node_env(settings: Any) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": settings.redis_url, "TASKLINE_QUEUE": settings.queue}


def run(settings: Any, body: str, plan: dict[str, Any]) -> Any:
    return node_json(PRELUDE + body, stdin=json.dumps(plan), env=node_env(settings), timeout=120)


async def test_commands_sent_from_node_are_applied_by_a_real_worker(settings, redis, db, users, start_worker):
    """create/update/complete, a bulk job and a duplicate sent by the TypeScript client end up in PostgreSQL."""
    worker = start_worker()
    await started(worker)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    a, b, c, d = (uuid4() for _ in range(4))
    plan = {"base": base.isoformat(), "a": str(a), "b": str(b), "c": str(c), "d": str(d)}

    sent = run(settings, SEND, plan)

    assert [sent[name]["queued"] for name in ("created", "updated", "completed")] == [True, True, True]
    assert sent["created"]["jobId"] == sent["created"]["commandId"]
    assert sent["bulk"]["queued"] is True
    assert {r["jobId"] for r in sent["bulk"]["receipts"]} == {sent["bulk"]["jobId"]}
    assert sent["many"]["queued"] == 1
    assert sent["many"]["duplicates"] == [sent["many"]["receipts"][0]["commandId"]]

    async def all_applied() -> bool:
        rows = await db.fetch("SELECT id, completed FROM task WHERE id = ANY($1::uuid[])", [a, b, c, d])
        return len(rows) == 4 and any(row["id"] == a and row["completed"] for row in rows)

    await wait_for(all_applied, timeout=30)
    rows = {row["id"]: row for row in await db.fetch("SELECT * FROM task WHERE id = ANY($1::uuid[])", [a, b, c, d])}
    assert (rows[a]["user_id"], rows[a]["title"]) == (1, "From Node.js")
    assert rows[a]["description"] == "via @taskline/producer"
    assert rows[a]["completed_at"] == base + timedelta(seconds=2)
    assert (rows[b]["user_id"], rows[b]["title"], rows[b]["description"]) == (2, "Bulk B", None)
    assert (rows[c]["user_id"], rows[c]["title"], rows[c]["description"]) == (3, "Bulk C", "ünïcødé 😀 \u2028")
    assert (rows[d]["user_id"], rows[d]["title"], rows[d]["completed"]) == (4, "Sent twice", False)
    command_ids = [UUID(sent[name]["commandId"]) for name in ("created", "updated", "completed")]
    command_ids += [UUID(r["commandId"]) for r in sent["bulk"]["receipts"]]
    command_ids.append(UUID(sent["many"]["receipts"][0]["commandId"]))
    processed = await db.fetchval(
        "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids
    )
    assert processed == 6
    dead = await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue)
    assert dead == 0

    # Sent again once applied: queued (its job was gone), and a no-op for the worker.
    again = run(settings, RESEND, {**plan, "command_id": sent["created"]["commandId"]})["again"]
    assert again["queued"] is True
    await wait_for(lambda: _gone(redis, f"arq:job:{again['jobId']}"), timeout=30)
    row = await db.fetchrow("SELECT title, updated_at FROM task WHERE id = $1", a)
    assert (row["title"], row["updated_at"]) == ("From Node.js", rows[a]["updated_at"])
    assert worker.proc.poll() is None


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


# --- outcomes, recorded by the worker (worker/pipeline/outcomes.py) ------------------------------

OUTCOMES = """
async function gone(jobId) {
  const deadline = Date.now() + 30000;
  while (await client.exists(`arq:job:${jobId}`)) {
    if (Date.now() > deadline) throw new Error(`job ${jobId} still queued after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const { createTaskCommand, updateTaskCommand } = taskline;
  const wait = { timeoutMs: 30000 };
  const asked = { outcomeTtl: 300 };
  const first = { userId: 5, title: "Waited for", taskId: plan.a, issuedAt: at(0) };
  const created = await producer.createTask(first, asked);
  out.applied = await created.outcome(wait);
  // Another create of the same task: a conflict, dead-lettered at once with its reason.
  const conflict = await producer.createTask({ ...first, title: "Again", issuedAt: at(1) }, asked);
  out.deadLetter = await conflict.outcome(wait);
  // An update of a task that does not exist yet: retrying, not final; the wait times out.
  const early = await producer.updateTask({ taskId: plan.b, userId: 5, title: "Too early" }, asked);
  out.retrying = await early.outcome({ timeoutMs: 1500 });
  // A bulk job: one outcome per command, keyed by each command id.
  const bulk = await producer.sendBulk([
    createTaskCommand({ userId: 6, title: "Bulk one", taskId: plan.c, issuedAt: at(0) }),
    updateTaskCommand({ taskId: plan.a, userId: 5, description: "from the bulk", issuedAt: at(3) }),
  ], asked);
  out.bulk = await Promise.all(bulk.receipts.map((receipt) => receipt.outcome(wait)));
  // Without outcomeTtl nothing is recorded: once its job is gone, the state is unknown.
  const plain = await producer.createTask({ userId: 6, title: "No outcome asked", taskId: plan.d, issuedAt: at(0) });
  await gone(plain.jobId);
  out.plain = await plain.outcome({ timeoutMs: 0 });
  // The same command again, now with outcomes: queued (its job was gone), a duplicate for the worker.
  const again = await producer.createTask(
    { userId: 6, title: "No outcome asked", taskId: plan.d, issuedAt: at(0), commandId: plain.commandId }, asked);
  out.againQueued = again.queued;
  out.duplicate = await again.outcome(wait);
}
"""


async def test_node_waits_for_outcomes_recorded_by_a_real_worker(settings, redis, db, users, start_worker):
    """receipt.outcome() reports applied, duplicate, dead_letter (with reason), retrying and bulk outcomes."""
    # An update before its create goes back to Redis as a not-yet retry at once (not held in the
    # worker for its create first), so the client sees "retrying" within its 1.5 s wait.
    worker = start_worker(TASKLINE_WAIT_FOR_CREATE="0")
    await started(worker)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    a, b, c, d = (uuid4() for _ in range(4))
    plan = {"base": base.isoformat(), "a": str(a), "b": str(b), "c": str(c), "d": str(d)}

    out = run(settings, OUTCOMES, plan)

    assert (out["applied"]["state"], out["applied"]["final"]) == ("applied", True)
    assert out["againQueued"] is True
    assert out["duplicate"]["state"] == "duplicate"
    assert out["deadLetter"]["state"] == "dead_letter"
    assert out["deadLetter"]["reason"]
    assert (out["retrying"]["state"], out["retrying"]["final"], out["retrying"]["timedOut"]) == (
        "retrying",
        False,
        True,
    )
    assert out["retrying"]["nextTryAt"] is not None
    assert [o["state"] for o in out["bulk"]] == ["applied", "applied"]
    assert len({o["jobId"] for o in out["bulk"]}) == 1

    assert (out["plain"]["state"], out["plain"]["timedOut"]) == ("unknown", True)
    row = await db.fetchrow("SELECT description FROM task WHERE id = $1", a)
    assert row["description"] == "from the bulk"
    assert worker.proc.poll() is None


async def test_jobs_signed_by_node_verify_in_a_worker_that_requires_signatures(
    settings, redis, db, users, start_worker
):
    """The cross-language check of signing: the TypeScript client, keyed from
    TASKLINE_SIGNING_KEY_ID/SECRET, signs single, bulk and pipelined jobs (non-ASCII text and
    U+2028 included) that a worker requiring signatures applies, recording the key."""
    secret = "n" * 64
    keys = {"node-key": {"secret": secret, "user_ids": {"min": 1, "max": 4}}}
    worker = start_worker(TASKLINE_SIGNING_KEYS=json.dumps(keys), TASKLINE_REQUIRE_SIGNATURES="true")
    await started(worker)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    a, b, c, d = (uuid4() for _ in range(4))
    plan = {"base": base.isoformat(), "a": str(a), "b": str(b), "c": str(c), "d": str(d)}
    env = {**node_env(settings), "TASKLINE_SIGNING_KEY_ID": "node-key", "TASKLINE_SIGNING_SECRET": secret}

    sent = node_json(PRELUDE + SEND, stdin=json.dumps(plan), env=env, timeout=120)

    command_ids = [UUID(sent[name]["commandId"]) for name in ("created", "updated", "completed")]
    command_ids += [UUID(r["commandId"]) for r in sent["bulk"]["receipts"]]
    command_ids.append(UUID(sent["many"]["receipts"][0]["commandId"]))

    async def all_recorded() -> bool:
        found = await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids
        )
        ours = [str(command_id) for command_id in command_ids] + [sent["bulk"]["jobId"]]
        dead = await db.fetch("SELECT job_id, reason FROM dead_letter WHERE job_id = ANY($1::text[])", ours)
        assert not dead, dead
        return found == len(command_ids)

    await wait_for(all_recorded, timeout=30)
    signers = await db.fetch(
        "SELECT DISTINCT signed_by FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids
    )
    assert [row["signed_by"] for row in signers] == ["node-key"]
    description = await db.fetchval("SELECT description FROM task WHERE id = $1", c)
    assert description == "ünïcødé 😀 \u2028"
