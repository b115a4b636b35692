"""Acting on the queue (worker/tools/queue_actions.py) on real PostgreSQL and Redis: delete makes
a dead letter and never races a worker into running and removing the same job; run now; pause
and resume; every action leaves an operator_action record."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from taskline_producer import keys
from taskline_producer.contract import CreateTask
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, epoch_ms, job_of_command

from tests.conftest import run_burst
from worker.store.operator_actions import find_actions
from worker.tools.queue_actions import (
    HOLD_SCRIPT,
    REMOVED_CATEGORY,
    delete_queued_job,
    pause_claiming,
    paused_by,
    resume_claiming,
    run_now,
)

pytestmark = pytest.mark.integration
WHO = "web:tester"


async def _enqueue(redis, queue: str, *, user_id: int = 1, delay_ms: int = 0) -> CreateTask:
    command = CreateTask(
        command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=user_id, title="from a test"
    )
    job_id = str(command.command_id)
    await redis.eval(
        ENQUEUE_SCRIPT, 1, queue, epoch_ms() + delay_ms, DEFAULT_JOB_TTL_MS, job_id, job_of_command(command, 0)
    )
    return command


async def test_a_deleted_job_leaves_the_queue_and_becomes_a_removed_dead_letter_with_a_record(
    settings, redis, db, sessions
):
    """Delete takes a queued job out of Redis entirely (job, tries, queue entry) and writes its dead
    letter, payload kept, saying an operator removed it; the audit record names who."""
    command = await _enqueue(redis, settings.queue, delay_ms=60_000)
    job_id = str(command.command_id)
    await redis.set(keys.retry_key(job_id), 2)
    result = await delete_queued_job(redis, sessions, settings.queue, job_id, who=WHO, max_payload_bytes=65536)
    assert result.done, result.message
    assert await redis.zscore(settings.queue, job_id) is None
    assert await redis.exists(keys.job_key(job_id), keys.retry_key(job_id), keys.in_progress_key(job_id)) == 0
    row = await db.fetchrow("SELECT * FROM dead_letter WHERE job_id = $1", job_id)
    assert row["category"] == REMOVED_CATEGORY
    assert row["reason"].startswith(f"removed by an operator ({WHO})")
    assert row["function"] == "create_task"
    assert job_id.encode() in row["payload"]
    async with sessions() as session:
        (record,) = await find_actions(session, target=job_id)
    assert (record.who, record.action, record.queue) == (WHO, "delete", settings.queue)


async def test_delete_refuses_a_running_job_and_one_not_in_the_queue(settings, redis, db, sessions):
    """A job a worker holds (its claim exists) is not deleted, nor is an id the queue does not
    hold; neither writes a dead letter, and both are recorded as refused."""
    command = await _enqueue(redis, settings.queue)
    job_id = str(command.command_id)
    await redis.set(keys.in_progress_key(job_id), "w:1:a", px=30_000)
    running = await delete_queued_job(redis, sessions, settings.queue, job_id, who=WHO, max_payload_bytes=65536)
    assert not running.done
    assert "running" in running.message
    assert await redis.zscore(settings.queue, job_id) is not None
    absent = await delete_queued_job(redis, sessions, settings.queue, "no-such-job", who=WHO, max_payload_bytes=65536)
    assert not absent.done
    assert "not in the queue" in absent.message
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = ANY($1)", [job_id, "no-such-job"]) == 0
    async with sessions() as session:
        assert len(await find_actions(session, queue=settings.queue, action="delete")) == 2


async def test_with_the_database_down_delete_releases_its_hold_so_the_job_still_runs(settings, redis):
    """If the dead letter cannot be written (PostgreSQL unreachable), the operator's hold on the
    job is dropped at once: the job stays queued for a worker, nothing is lost."""
    from worker.store.engine import make_engine, make_sessions

    command = await _enqueue(redis, settings.queue)
    job_id = str(command.command_id)
    down = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"})
    engine = make_engine(down)
    try:
        with pytest.raises(OSError):  # noqa: PT011 (a refused connection: its text varies by platform)
            await delete_queued_job(redis, make_sessions(engine), settings.queue, job_id, who=WHO, max_payload_bytes=1)
    finally:
        await engine.dispose()
    assert await redis.zscore(settings.queue, job_id) is not None
    assert await redis.exists(keys.in_progress_key(job_id)) == 0


async def test_a_job_deleted_while_workers_claim_is_either_run_or_removed_never_both_never_lost(
    settings, redis, db, users, sessions
):
    """Deleting 60 jobs while a worker drains the same queue: every job ends as exactly one of
    applied (a processed_command row) or removed (a dead letter), never both, never neither."""
    commands = [await _enqueue(redis, settings.queue, user_id=1 + n % 20) for n in range(60)]
    ids = [str(c.command_id) for c in commands]

    async def delete_all() -> None:
        for job_id in ids:
            await delete_queued_job(redis, sessions, settings.queue, job_id, who=WHO, max_payload_bytes=65536)

    await asyncio.gather(run_burst(settings, max_jobs=4), delete_all())
    await run_burst(settings)  # what the first burst left, if the deletes held it back
    applied = {
        str(r[0])
        for r in await db.fetch("SELECT command_id FROM processed_command WHERE command_id::text = ANY($1)", ids)
    }
    removed = {
        r[0]
        for r in await db.fetch("SELECT job_id FROM dead_letter WHERE category = 'removed' AND job_id = ANY($1)", ids)
    }
    assert applied & removed == set()
    assert applied | removed == set(ids)
    assert await redis.zcard(settings.queue) == 0


async def test_run_now_makes_a_deferred_job_due_and_says_why_when_it_cannot(settings, redis, sessions):
    """Run now moves a deferred job's score to now; a due job, a held one and an unknown id are
    left alone with a reason; each attempt is recorded."""
    later = str((await _enqueue(redis, settings.queue, delay_ms=600_000)).command_id)
    due = str((await _enqueue(redis, settings.queue)).command_id)
    result = await run_now(redis, sessions, settings.queue, later, who=WHO)
    assert result.done
    assert await redis.zscore(settings.queue, later) <= epoch_ms()
    assert not (await run_now(redis, sessions, settings.queue, due, who=WHO)).done
    held = str((await _enqueue(redis, settings.queue, delay_ms=600_000)).command_id)
    await redis.eval(HOLD_SCRIPT, 1, settings.queue, held, "w:1:a", "30000")
    assert "running" in (await run_now(redis, sessions, settings.queue, held, who=WHO)).message
    assert "not in the queue" in (await run_now(redis, sessions, settings.queue, "nope", who=WHO)).message
    async with sessions() as session:
        assert len(await find_actions(session, queue=settings.queue, action="run-now")) == 4


async def test_pause_and_resume_set_and_clear_the_queues_pause_key_with_who_and_when(settings, redis, sessions):
    """Pause writes `<queue>:paused` = {"by", "at"} once (a second pause says so); resume removes
    it; both are recorded."""
    assert await paused_by(redis, settings.queue) is None
    assert (await pause_claiming(redis, settings.queue, WHO, sessions)).done
    assert not (await pause_claiming(redis, settings.queue, WHO, sessions)).done
    document = json.loads(await redis.get(keys.paused_key(settings.queue)))
    assert document["by"] == WHO
    assert document["at"]
    assert (await paused_by(redis, settings.queue))["by"] == WHO
    assert (await resume_claiming(redis, settings.queue, WHO, sessions)).done
    assert await redis.exists(keys.paused_key(settings.queue)) == 0
    assert not (await resume_claiming(redis, settings.queue, WHO, sessions)).done
    async with sessions() as session:
        actions = [a.action for a in await find_actions(session, queue=settings.queue)]
    assert actions == ["resume", "resume", "pause", "pause"]


async def test_dead_letters_filter_by_the_user_and_the_task_their_payload_names(settings, redis, sessions):
    """The dead-letter view's user and task filters match the payload's `user_id` exactly (user 1
    is not user 12) and the task id's text; pages follow each other by offset."""
    from worker.store.dead_letter_queries import DeadLetterFilter, find_dead_letters

    made = [await _enqueue(redis, settings.queue, user_id=user, delay_ms=600_000) for user in (1, 12, 1)]
    for command in made:
        job_id = str(command.command_id)
        await delete_queued_job(redis, sessions, settings.queue, job_id, who=WHO, max_payload_bytes=65536)
    ids = [str(c.command_id) for c in made]
    async with sessions() as session:
        ones = await find_dead_letters(session, DeadLetterFilter(job_ids=ids, user_id=1))
        twelve = await find_dead_letters(session, DeadLetterFilter(job_ids=ids, user_id=12))
        task = await find_dead_letters(session, DeadLetterFilter(job_ids=ids, task_id=str(made[1].task_id)))
        first = await find_dead_letters(session, DeadLetterFilter(job_ids=ids), limit=2)
        rest = await find_dead_letters(session, DeadLetterFilter(job_ids=ids), limit=2, offset=2)
    assert sorted(d.job_id for d in ones) == sorted([ids[0], ids[2]])
    assert [d.job_id for d in twelve] == [ids[1]]
    assert [d.job_id for d in task] == [ids[1]]
    assert sorted(d.job_id for d in first + rest) == sorted(ids)
    assert len(rest) == 1


async def test_the_command_lines_replay_and_discard_are_recorded_under_the_os_user(settings, redis, db, sessions):
    """`taskline dead-letters replay` and `discard` write operator_action rows naming `cli:<OS user>`."""
    import getpass

    from tests.conftest import taskline

    made = [str((await _enqueue(redis, settings.queue, delay_ms=600_000)).command_id) for _ in range(2)]
    for job_id in made:
        await delete_queued_job(redis, sessions, settings.queue, job_id, who=WHO, max_payload_bytes=65536)
    replayed = await taskline(settings, "dead-letters", "replay", made[0])
    assert replayed.returncode == 0, replayed.stderr
    discarded = await taskline(settings, "dead-letters", "discard", made[1])
    assert discarded.returncode == 0, discarded.stderr
    rows = await db.fetch(
        "SELECT who, action, target, detail FROM operator_action WHERE target = ANY($1) AND who LIKE 'cli:%'", made
    )
    assert sorted((r["action"], r["target"], r["detail"]) for r in rows) == [
        ("discard", made[1], "discarded"),
        ("replay", made[0], "replayed"),
    ]
    assert {r["who"] for r in rows} == {f"cli:{getpass.getuser()}"}
