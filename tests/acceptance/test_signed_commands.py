"""Signed commands with a real worker that requires signatures: what is signed by a key within its
scope is applied and recorded under the key; everything else becomes a dead letter naming the
key id and saying why, and nothing of it is applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from starlette.testclient import TestClient
from taskline_producer import SigningKey, TaskProducer
from taskline_producer.contract import CreateTask, UpdateTask
from taskline_producer.wire import epoch_ms, job_of_command

from tests.acceptance.test_worker_process import dead_letters, raw_enqueue, started
from tests.conftest import taskline, wait_for
from worker.web.app import create_app

pytestmark = pytest.mark.acceptance

KEY_A = SigningKey.of("producer-a", "a" * 64)
KEY_B = SigningKey.of("producer-b", "b" * 64)
KEYS = {
    "producer-a": {"secret": "a" * 64, "user_ids": {"min": 1, "max": 5}},
    "producer-b": {"secret": "b" * 64, "user_ids": [6, 7, 8, 9, 10]},
    "producer-old": {"secret": "o" * 64, "retired": True},
}


def create(user_id: int, title: str = "t") -> CreateTask:
    issued = datetime.now(UTC) - timedelta(seconds=5)
    return CreateTask(command_id=uuid4(), issued_at=issued, task_id=uuid4(), user_id=user_id, title=title)


async def test_a_worker_that_requires_signatures_applies_only_what_a_key_may_send(
    settings, redis, db, users, start_worker
):
    """Signed within scope: applied, processed_command.signed_by names the key. Forged user_id
    (key A acting for a user of key B's scope), unknown key, retired key, a changed payload and an
    unsigned job: dead letters whose reason says which and whose signed_by names the key id; none
    applied. A signed bulk job's in-scope items apply and its not-yet item, re-enqueued by the
    worker on its own, still verifies as key B's."""
    worker = start_worker(TASKLINE_SIGNING_KEYS=json.dumps(KEYS), TASKLINE_REQUIRE_SIGNATURES="true")
    await started(worker)
    signed_a = TaskProducer(redis, queue=settings.queue, signing_key=KEY_A)
    applied = await signed_a.create_task(user_id=2, title="signed by A")
    # A signed update whose task comes later: retried by arq as it is (its bytes, its signature).
    later_a = create(user_id=3, title="created after its update")
    waiting_a = await signed_a.update_task(
        task_id=later_a.task_id, user_id=3, title="updated", issued_at=later_a.issued_at + timedelta(seconds=1)
    )

    forged = create(user_id=7, title="A acting for B's user")
    unknown = create(user_id=2)
    retired = create(user_id=2)
    tampered = create(user_id=2)
    unsigned = create(user_id=2)
    tampered_job = job_of_command(tampered, epoch_ms(), None, KEY_A).replace(b'"user_id":2', b'"user_id":3')
    jobs = {
        forged: job_of_command(forged, epoch_ms(), None, KEY_A),
        unknown: job_of_command(unknown, epoch_ms(), None, SigningKey.of("stranger", "s" * 64)),
        retired: job_of_command(retired, epoch_ms(), None, SigningKey.of("producer-old", "o" * 64)),
        tampered: tampered_job,
        unsigned: job_of_command(unsigned, epoch_ms()),
    }
    for command, job in jobs.items():
        assert await raw_enqueue(redis, settings.queue, str(command.command_id), job)

    # key B's bulk: an in-scope create, an out-of-scope one, and an update of a task that does not
    # exist yet (re-enqueued on its own by the worker; created afterwards by key B).
    later = create(user_id=8, title="created after its update")
    bulk_create, bulk_outside = create(user_id=6), create(user_id=1)
    waiting = UpdateTask(
        command_id=uuid4(),
        issued_at=later.issued_at + timedelta(seconds=1),
        task_id=later.task_id,
        user_id=8,
        title="u",
    )
    signed_b = TaskProducer(redis, queue=settings.queue, signing_key=KEY_B)
    await signed_b.send_bulk([bulk_create, bulk_outside, waiting])
    await wait_for(lambda: _processed(db, [bulk_create.command_id]), timeout=30)
    await signed_b.send(later)
    await signed_a.send(later_a)

    refused = [forged, unknown, retired, tampered, unsigned, bulk_outside]
    wanted = [str(c.command_id) for c in refused]
    await wait_for(lambda: _count(db, wanted), timeout=30)
    signed_ok = [applied.command_id, waiting.command_id, later.command_id, waiting_a.command_id, later_a.command_id]
    await wait_for(lambda: _processed(db, signed_ok), timeout=30)
    letters = await dead_letters(db, wanted)

    def letter(command: CreateTask) -> tuple[str, str | None]:
        row = letters[str(command.command_id)]
        return row["reason"], row["signed_by"]

    reason, key = letter(forged)
    assert reason.startswith("out of scope: key 'producer-a' may not send create_task for user 7"), reason
    assert key == "producer-a"
    reason, key = letter(unknown)
    assert reason.startswith("unknown key: signed with key id 'stranger'"), reason
    assert key == "stranger"
    reason, key = letter(retired)
    assert reason.startswith("retired key: signed with key 'producer-old'"), reason
    assert key == "producer-old"
    reason, key = letter(tampered)
    assert reason.startswith("bad signature: the mac does not match key 'producer-a'"), reason
    assert key == "producer-a"
    reason, key = letter(unsigned)
    assert reason.startswith("unsigned: this worker requires signed jobs"), reason
    assert key is None
    reason, key = letter(bulk_outside)
    assert reason.startswith("out of scope: key 'producer-b' may not send create_task for user 1"), reason
    assert key == "producer-b"

    refused_tasks = [c.task_id for c in refused]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", refused_tasks) == 0
    signers = dict(
        await db.fetch(
            "SELECT command_id, signed_by FROM processed_command WHERE command_id = ANY($1::uuid[])",
            [*signed_ok, bulk_create.command_id],
        )
    )
    assert signers == {
        applied.command_id: "producer-a",
        waiting_a.command_id: "producer-a",
        later_a.command_id: "producer-a",
        bulk_create.command_id: "producer-b",
        waiting.command_id: "producer-b",
        later.command_id: "producer-b",
    }
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", later.task_id) == "u"
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", later_a.task_id) == "updated"
    assert worker.proc.poll() is None, worker.log()

    # The trace (command line and page) and the dead letter page name the key.
    traced = await taskline(settings, "trace", str(applied.command_id), "--json")
    assert json.loads(traced.stdout)["applied"]["signed_by"] == "producer-a", traced.stderr
    traced = await taskline(settings, "trace", str(forged.command_id), "--json")
    assert json.loads(traced.stdout)["dead_letter"]["signed_by"] == "producer-a", traced.stderr
    with TestClient(create_app(settings, watch=False)) as client:
        page = client.get(f"/trace?id={applied.command_id}").text
        assert '<dd data-field="signed-by">producer-a</dd>' in page
        page = client.get(f"/dead-letters/{forged.command_id}").text
        assert '<dd data-field="signed-by">producer-a</dd>' in page
        page = client.get(f"/trace?id={later.task_id}").text
        assert "<td>producer-b</td>" in page


async def _count(db, job_ids: list[str]) -> bool:
    return len(await dead_letters(db, job_ids)) == len(job_ids)


async def _processed(db, command_ids) -> bool:
    found = await db.fetchval(
        "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", list(command_ids)
    )
    return int(found) == len(command_ids)
