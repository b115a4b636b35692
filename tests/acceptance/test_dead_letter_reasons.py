"""Dead-letter reasons a person can act on: in the command's terms, capped in length, and the
job id = command_id rule enforced."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taskline_producer.contract import CreateTask, dumps
from taskline_producer.wire import envelope, epoch_ms, job_of_command

from tests.acceptance.test_worker_process import dead_letters, raw_enqueue, started
from tests.conftest import wait_for
from worker.pipeline.dead_letters import REASON_MAX_CHARS

pytestmark = pytest.mark.acceptance


async def test_reasons_name_fields_are_capped_and_a_job_id_must_be_the_command_id(
    settings, redis, db, users, start_worker
):
    """A 60 KB function name gives a reason (and a log line) of bounded length; a valid command
    enqueued under another job id is a dead letter saying so, not applied; an invalid command's
    reason names command.<field> and a bulk item's commands[i].<field>."""
    worker = start_worker()
    await started(worker)
    huge_name = "f" * (60 * 1024)
    huge_id, mismatch_id, invalid_id, bulk_id = (f"{name}-{uuid4()}" for name in ("huge", "mismatch", "x", "bulk"))
    assert await raw_enqueue(
        redis, settings.queue, huge_id, dumps({"f": huge_name, "a": [], "k": {}, "t": None, "et": epoch_ms()})
    )
    command = CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title="t")
    assert await raw_enqueue(redis, settings.queue, mismatch_id, job_of_command(command, epoch_ms()))
    bad = {"command_id": str(uuid4()), "task_id": str(uuid4()), "user_id": 1, "title": "t"}  # no issued_at
    assert await raw_enqueue(redis, settings.queue, invalid_id, envelope("create_task", bad, epoch_ms()))
    bad_item_id = str(uuid4())
    items = [
        {
            "function": "create_task",
            "command": {**bad, "command_id": str(uuid4()), "issued_at": datetime.now(UTC).isoformat()},
        },
        {"function": "create_task", "command": {**bad, "command_id": bad_item_id, "title": ""}},
    ]
    assert await raw_enqueue(redis, settings.queue, bulk_id, envelope("apply_commands", items, epoch_ms()))

    wanted = [huge_id, mismatch_id, invalid_id, bad_item_id]
    await wait_for(lambda: _all_there(db, wanted), timeout=30)
    letters = await dead_letters(db, wanted)

    huge = letters[huge_id]["reason"]
    assert len(huge) <= REASON_MAX_CHARS, len(huge)
    assert "is not a taskline command" in huge
    longest_line = max(len(line) for line in worker.log().splitlines())
    assert longest_line < 2 * REASON_MAX_CHARS + 2000, longest_line

    mismatch = letters[mismatch_id]["reason"]
    assert str(command.command_id) in mismatch
    assert "command_id" in mismatch
    assert letters[mismatch_id]["category"] == "permanent"
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = $1", command.task_id) == 0

    assert letters[invalid_id]["reason"] == "command.issued_at: Field required"
    assert letters[bad_item_id]["reason"] == (
        "commands[1].issued_at: Field required; commands[1].title: String should have at least 1 character"
    )
    assert worker.proc.poll() is None, worker.log()


async def _all_there(db, job_ids: list[str]) -> bool:
    return len(await dead_letters(db, job_ids)) == len(job_ids)
