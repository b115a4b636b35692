"""worker.testing.apply_sent: what a recording producer sent, run through the worker's decoder and
apply statements in process, against the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from taskline_producer import SigningKey
from taskline_producer.contract import CreateTask
from taskline_producer.testing import RecordingProducer

from worker.config.signing_keys import KeyConfig
from worker.pipeline.decode import Decoder
from worker.pipeline.signatures import Verifier
from worker.testing import apply_sent

pytestmark = pytest.mark.integration


async def test_sent_commands_take_effect_with_the_workers_verdicts(sessions, db, users):
    """create, update and complete sent through a RecordingProducer take effect in the database; a
    command for a missing user is `not_yet`, another user's task is a dead letter (forbidden), and
    a job Redis refused as a duplicate never reaches the worker."""
    producer = RecordingProducer()
    now = datetime.now(UTC)
    created = await producer.create_task(user_id=1, title="Write tests", issued_at=now)
    await producer.create_task(user_id=1, title="Write tests", command_id=created.command_id)  # refused at enqueue
    await producer.update_task(
        task_id=created.task_id, user_id=1, description="today", issued_at=now + timedelta(seconds=1)
    )
    await producer.complete_task(task_id=created.task_id, user_id=2)
    await producer.create_task(user_id=999_999, title="Nobody's")
    async with sessions() as session, session.begin():
        results = await apply_sent(session, producer.jobs)
    assert [(r.function, r.state) for r in results] == [
        ("create_task", "applied"),
        ("update_task", "applied"),
        ("complete_task", "dead_letter"),
        ("create_task", "not_yet"),
    ]
    assert "forbidden" in str(results[2].reason)
    assert "user not found" in str(results[3].reason)
    row = await db.fetchrow("SELECT title, description, completed FROM task WHERE id = $1", created.task_id)
    assert tuple(row) == ("Write tests", "today", False)


async def test_applying_the_same_jobs_again_gives_duplicates(sessions, db, users):
    """Running the same sent jobs twice (a redelivery) applies each command once: duplicates the
    second time, bulk items included."""
    producer = RecordingProducer()
    now = datetime.now(UTC)
    await producer.send_bulk(
        [CreateTask(command_id=uuid4(), issued_at=now, task_id=uuid4(), user_id=3, title="b") for _ in range(2)]
    )
    for expected in ("applied", "duplicate"):
        async with sessions() as session, session.begin():
            results = await apply_sent(session, producer.jobs)
        assert [r.state for r in results] == [expected, expected]
    task_ids = [command.task_id for command in producer.jobs[0].commands]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", task_ids) == 2
    duplicates = "SELECT sum(duplicates) FROM processed_command WHERE task_id = ANY($1::uuid[])"
    assert await db.fetchval(duplicates, task_ids) == 2


async def test_a_signing_producers_jobs_pass_the_workers_verifier_and_record_the_key(sessions, db, users):
    """With a decoder holding the producer's key and requiring signatures, a signed producer's
    command is applied and its processed command names the key; an unsigned one is a dead letter."""
    key = SigningKey.of("svc-1", "k" * 40)
    verifier = Verifier({key.key_id: KeyConfig(secret=key.secret.decode())}, required=True)
    decoder = Decoder(65536, 1 << 20, verifier)
    signed, unsigned = RecordingProducer(signing_key=key), RecordingProducer()
    receipt = await signed.create_task(user_id=4, title="Signed")
    await unsigned.create_task(user_id=4, title="Unsigned")
    async with sessions() as session, session.begin():
        results = await apply_sent(session, [*signed.jobs, *unsigned.jobs], decoder=decoder)
    assert [r.state for r in results] == ["applied", "dead_letter"]
    assert "unsigned" in str(results[1].reason)
    assert (
        await db.fetchval("SELECT signed_by FROM processed_command WHERE command_id = $1", receipt.command_id)
        == "svc-1"
    )
