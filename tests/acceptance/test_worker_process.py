"""The real `worker` process from the Procfile, fed by the producer client, the CLIs and raw Redis."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis as redis_sync
from taskline_producer import TaskProducer
from taskline_producer.contract import CompleteTask, CreateTask, UpdateTask, dumps
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms

from tests.conftest import wait_for, worker_env

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent


def run_cli(settings: Any, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of the venv's console scripts with the test's REDIS_URL, DATABASE_URL and queue."""
    return subprocess.run(
        [str(BIN / program), *args], env=worker_env(settings), capture_output=True, text=True, timeout=timeout
    )


async def started(worker: Any) -> None:
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    assert worker.proc.poll() is None, worker.log()


async def processed_count(db: Any, command_ids: list[UUID]) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids)
    )


async def dead_letters(db: Any, job_ids: list[str]) -> dict[str, Any]:
    rows = await db.fetch("SELECT * FROM dead_letter WHERE job_id = ANY($1::text[])", job_ids)
    return {row["job_id"]: row for row in rows}


async def task_row(db: Any, task_id: UUID) -> Any:
    return await db.fetchrow("SELECT * FROM task WHERE id = $1", task_id)


async def raw_enqueue(redis: Any, queue: str, job_id: str, payload: bytes) -> bool:
    """Enqueue arbitrary bytes as a job, the way any other service could."""
    (queued,) = await redis.eval(ENQUEUE_SCRIPT, 1, queue, epoch_ms(), DEFAULT_JOB_TTL_MS, job_id, payload)
    return bool(queued)


async def test_commands_from_the_client_and_the_cli_are_applied(settings, redis, db, users, start_worker):
    """The Procfile's worker applies commands sent through TaskProducer and through `taskline-send`."""
    worker = start_worker()
    await started(worker)
    producer = TaskProducer(redis, queue=settings.queue)
    now = datetime.now(UTC) - timedelta(minutes=1)
    created = await producer.create_task(user_id=1, title="From the client", issued_at=now)
    await producer.update_task(
        task_id=created.task_id, user_id=1, description="via TaskProducer", issued_at=now + timedelta(seconds=1)
    )
    await producer.complete_task(task_id=created.task_id, user_id=1, issued_at=now + timedelta(seconds=2))

    cli_task = uuid4()
    sent = run_cli(
        settings,
        "taskline-send",
        "create",
        "--user-id",
        "2",
        "--title",
        "From the CLI",
        "--description",
        "typed",
        "--task-id",
        str(cli_task),
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["status"] == "queued"
    sent = run_cli(
        settings,
        "taskline-send",
        "update",
        "--task-id",
        str(cli_task),
        "--user-id",
        "2",
        "--title",
        "Renamed by the CLI",
    )
    assert sent.returncode == 0, sent.stderr
    sent = run_cli(settings, "taskline-send", "complete", "--task-id", str(cli_task), "--user-id", "2")
    assert sent.returncode == 0, sent.stderr

    async def both_done() -> bool:
        rows = [await task_row(db, created.task_id), await task_row(db, cli_task)]
        return all(row is not None and row["completed"] for row in rows)

    await wait_for(both_done, timeout=30)
    row = await task_row(db, created.task_id)
    assert (row["user_id"], row["title"], row["description"]) == (1, "From the client", "via TaskProducer")
    assert row["completed_at"] == now + timedelta(seconds=2)
    row = await task_row(db, cli_task)
    assert (row["user_id"], row["title"], row["description"]) == (2, "Renamed by the CLI", "typed")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE task_id = ANY($1::uuid[])", [created.task_id, cli_task]
        )
        == 6
    )
    assert worker.proc.poll() is None


async def test_a_command_enqueued_with_plain_redis_commands_is_applied(settings, db, users, start_worker):
    """A producer that only speaks Redis (WATCH/EXISTS/MULTI/SET/ZADD/EXEC, JSON by hand) is served."""
    # No producers/arq code here on purpose: this is the README's raw-Redis recipe, nothing more.
    client = redis_sync.Redis.from_url(settings.redis_url)
    task_id = str(uuid4())
    base = datetime.now(UTC) - timedelta(minutes=1)

    def enqueue(function: str, command: dict[str, Any]) -> bool:
        job_id = command["command_id"]
        now_ms = int(time.time() * 1000)
        body = json.dumps({"f": function, "a": [command], "k": {}, "t": None, "et": now_ms})
        with client.pipeline(transaction=True) as pipe:
            pipe.execute_command("WATCH", f"arq:job:{job_id}")
            if pipe.execute_command("EXISTS", f"arq:job:{job_id}", f"arq:result:{job_id}") != 0:
                pipe.reset()
                return False
            pipe.multi()
            pipe.execute_command("SET", f"arq:job:{job_id}", body, "PX", 86400000)
            pipe.execute_command("ZADD", settings.queue, now_ms, job_id)
            pipe.execute()  # EXEC
            return True

    def stamp(seconds: int) -> str:
        return (base + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    create = {"command_id": str(uuid4()), "issued_at": stamp(0), "task_id": task_id, "user_id": 4, "title": "Raw Redis"}
    update = {
        "command_id": str(uuid4()),
        "issued_at": stamp(1),
        "task_id": task_id,
        "user_id": 4,
        "description": "hand-built JSON",
    }
    complete = {"command_id": str(uuid4()), "issued_at": stamp(2), "task_id": task_id, "user_id": 4}
    try:
        assert enqueue("create_task", create)
        assert not enqueue("create_task", create), "the same job id must be refused while it is queued"
        assert enqueue("update_task", update)
        assert enqueue("complete_task", complete)

        start_worker()

        async def done() -> Any:
            row = await task_row(db, UUID(task_id))
            return row is not None and row["completed"] and row["description"] is not None

        await wait_for(done, timeout=30)
        row = await task_row(db, UUID(task_id))
        assert (row["user_id"], row["title"], row["description"]) == (4, "Raw Redis", "hand-built JSON")
        assert row["completed_at"] == base + timedelta(seconds=2)
        ids = [UUID(c["command_id"]) for c in (create, update, complete)]
        assert await processed_count(db, ids) == 3
    finally:
        client.close()


def _stream_lines(task_a: UUID, task_b: UUID, base: datetime) -> tuple[list[str], list[UUID]]:
    def line(function: str, **command: Any) -> str:
        command.setdefault("command_id", str(uuid4()))
        return json.dumps({"function": function, "command": command})

    def at(seconds: int) -> str:
        return (base + timedelta(seconds=seconds)).isoformat()

    lines = [
        line("create_task", task_id=str(task_a), user_id=7, title="Streamed A", issued_at=at(0)),
        line("update_task", task_id=str(task_a), user_id=7, description="second line", issued_at=at(1)),
        line("create_task", task_id=str(task_b), user_id=7, title="", issued_at=at(0)),  # invalid: empty title
        "",
        line("create_task", task_id=str(task_b), user_id=8, title="Streamed B", issued_at=at(0)),
        line("complete_task", task_id=str(task_b), user_id=8, issued_at=at(2)),
    ]
    ids = [UUID(json.loads(text)["command"]["command_id"]) for i, text in enumerate(lines) if text and i != 2]
    return lines, ids


async def test_stream_reports_invalid_lines_and_refuses_duplicates(settings, redis, db, users, start_worker, tmp_path):
    """`taskline-send stream` counts sent, duplicate and invalid lines, exits 2 on invalid ones."""
    task_a, task_b = uuid4(), uuid4()
    lines, ids = _stream_lines(task_a, task_b, datetime.now(UTC) - timedelta(minutes=1))
    source = tmp_path / "commands.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    first = run_cli(settings, "taskline-send", "stream", str(source))
    assert first.returncode == 2, first.stdout + first.stderr
    assert "sent 4, refused as duplicates 0, invalid 1" in first.stdout
    assert "line 3: invalid" in first.stderr
    assert "title" in first.stderr

    # No worker yet, so the jobs are still queued: the same command ids are refused at enqueue.
    again = run_cli(settings, "taskline-send", "stream", str(source))
    assert again.returncode == 2, again.stdout + again.stderr
    assert "sent 0, refused as duplicates 4, invalid 1" in again.stdout
    assert await redis.zcard(settings.queue) == 4

    start_worker()
    await wait_for(lambda: _equals(processed_count(db, ids), 4), timeout=30)
    await wait_for(lambda: _equals(redis.zcard(settings.queue), 0), timeout=30)

    # Once processed, the jobs are gone from Redis: a third send is queued again, and the worker
    # recognises every command as a duplicate (processed_command), so nothing changes.
    third = run_cli(settings, "taskline-send", "stream", str(source))
    assert "sent 4, refused as duplicates 0, invalid 1" in third.stdout
    await wait_for(lambda: _equals(redis.zcard(settings.queue), 0), timeout=30)
    assert await processed_count(db, ids) == 4
    a, b = await task_row(db, task_a), await task_row(db, task_b)
    assert (a["title"], a["description"], a["completed"]) == ("Streamed A", "second line", False)
    assert (b["title"], b["user_id"], b["completed"]) == ("Streamed B", 8, True)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def test_invalid_jobs_become_dead_letters_that_the_cli_lists_replays_and_discards(
    settings, redis, db, users, start_worker, tmp_path
):
    """Bad JSON, a pickle, os.system, 70 KiB, another user's task and a create conflict are dead letters."""
    worker = start_worker(TASKLINE_FUTURE_TOLERANCE="0")
    await started(worker)
    producer = TaskProducer(redis, queue=settings.queue)
    owned = await producer.create_task(user_id=5, title="Owned by user 5")
    await wait_for(lambda: task_row(db, owned.task_id), timeout=30)

    suffix = uuid4().hex[:8]
    pwned = tmp_path / "pwned"
    ids = {name: f"{name}-{suffix}" for name in ("bad-json", "pickle", "os-system", "oversized")}
    now = epoch_ms()
    big = {
        "command_id": str(uuid4()),
        "issued_at": datetime.now(UTC).isoformat(),
        "task_id": str(uuid4()),
        "user_id": 5,
        "title": "big",
        "description": "x" * (70 * 1024),
    }
    assert await raw_enqueue(redis, settings.queue, ids["bad-json"], b'{"f":"create_task","a":[{"title":')
    assert await raw_enqueue(
        redis,
        settings.queue,
        ids["pickle"],
        pickle.dumps({"f": "create_task", "a": [{"title": "pickled"}], "k": {}, "t": None, "et": now}),
    )
    assert await raw_enqueue(
        redis,
        settings.queue,
        ids["os-system"],
        dumps({"f": "os.system", "a": [f"touch {pwned}"], "k": {}, "t": None, "et": now}),
    )
    oversized = envelope("create_task", big, now)
    assert len(oversized) > 70 * 1024
    assert await raw_enqueue(redis, settings.queue, ids["oversized"], oversized)
    ids["forbidden"] = str((await producer.update_task(task_id=owned.task_id, user_id=6, title="Hijacked")).command_id)
    ids["conflict"] = str((await producer.create_task(task_id=owned.task_id, user_id=5, title="Again")).command_id)
    future_at = datetime.now(UTC) + timedelta(seconds=6)
    ids["future"] = str(
        (
            await producer.update_task(
                task_id=owned.task_id, user_id=5, description="from the future", issued_at=future_at
            )
        ).command_id
    )
    # A valid command after all of them is still applied.
    later = await producer.update_task(task_id=owned.task_id, user_id=5, title="Still working")

    await wait_for(lambda: _equals(_count(dead_letters(db, list(ids.values()))), len(ids)), timeout=30)
    await wait_for(lambda: processed_count(db, [later.command_id]), timeout=30)
    assert worker.proc.poll() is None, worker.log()
    assert not pwned.exists()

    letters = await dead_letters(db, list(ids.values()))
    expected_reasons = {
        "bad-json": "Invalid JSON",
        "pickle": "pickle",
        "os-system": "'os.system' is not a taskline command",
        "oversized": "the limit is 65536 bytes",
        "forbidden": "forbidden: the task belongs to another user",
        "conflict": "conflict: another command already created this task id",
        "future": "ahead of the worker's clock",
    }
    for name, text in expected_reasons.items():
        letter = letters[ids[name]]
        assert text in letter["reason"], (name, letter["reason"])
        assert (letter["category"], letter["queue"], letter["attempts"]) == ("permanent", settings.queue, 1)
    assert letters[ids["oversized"]]["payload_size"] == len(oversized)
    row = await task_row(db, owned.task_id)
    assert (row["user_id"], row["title"], row["description"]) == (5, "Still working", None)

    # list --json, with and without filters
    listed = run_cli(settings, "taskline", "dead-letters", "list", "--json", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    mine = {d["job_id"]: d for d in map(json.loads, listed.stdout.splitlines()) if d["queue"] == settings.queue}
    assert set(mine) == set(ids.values())
    assert mine[ids["pickle"]]["reason"] == letters[ids["pickle"]]["reason"]
    by_function = run_cli(settings, "taskline", "dead-letters", "list", "--json", "--function", "update_task")
    functions = {d["job_id"] for d in map(json.loads, by_function.stdout.splitlines())}
    assert {ids["forbidden"], ids["future"]} <= functions
    assert ids["pickle"] not in functions
    by_reason = run_cli(settings, "taskline", "dead-letters", "list", "--json", "--reason", "PICKLE")
    assert ids["pickle"] in {d["job_id"] for d in map(json.loads, by_reason.stdout.splitlines())}

    shown = run_cli(settings, "taskline", "dead-letters", "show", ids["oversized"], "--json")
    assert shown.returncode == 0, shown.stderr
    shown_data = json.loads(shown.stdout)
    assert shown_data["payload_size"] == len(oversized)
    assert len(shown_data["payload"]) <= 64 * 1024

    # replay: the future command, once its time has come, is applied and its dead letter stays gone
    await wait_for(lambda: datetime.now(UTC) > future_at + timedelta(milliseconds=100), timeout=10)
    replayed = run_cli(settings, "taskline", "dead-letters", "replay", ids["future"], "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"replayed": [ids["future"]], "skipped": {}}
    await wait_for(lambda: processed_count(db, [UUID(ids["future"])]), timeout=30)
    assert (await task_row(db, owned.task_id))["description"] == "from the future"
    assert ids["future"] not in await dead_letters(db, [ids["future"]])

    # replay of a command that fails again brings its dead letter back under the same job id
    first_failure = letters[ids["conflict"]]["failed_at"]
    replayed = run_cli(settings, "taskline", "dead-letters", "replay", ids["conflict"], "--json")
    assert json.loads(replayed.stdout)["replayed"] == [ids["conflict"]]

    async def conflict_back() -> bool:
        again = (await dead_letters(db, [ids["conflict"]])).get(ids["conflict"])
        return again is not None and again["failed_at"] > first_failure

    await wait_for(conflict_back, timeout=30)

    # a truncated payload cannot be replayed
    replayed = run_cli(settings, "taskline", "dead-letters", "replay", ids["oversized"], "--json")
    report = json.loads(replayed.stdout)
    assert report["replayed"] == []
    assert "truncated" in report["skipped"][ids["oversized"]]

    discarded = run_cli(settings, "taskline", "dead-letters", "discard", ids["bad-json"], ids["pickle"], "--json")
    assert json.loads(discarded.stdout) == {"discarded": 2}
    left = set(await dead_letters(db, list(ids.values())))
    assert left == {ids["os-system"], ids["oversized"], ids["forbidden"], ids["conflict"]}
    assert worker.proc.poll() is None


async def _count(value: Any) -> int:
    return len(await value)


async def test_an_update_for_a_missing_task_is_dead_lettered_then_replayed_after_the_create(
    settings, redis, db, users, start_worker
):
    """An update whose task never came is dead-lettered after the not-yet window; replay applies it."""
    # A short window keeps the test quick (production default: 120 s); the backoff's jitter
    # makes the real wait up to about 1.5 times the window.
    worker = start_worker(TASKLINE_NOT_YET_WINDOW="2")
    await started(worker)
    producer = TaskProducer(redis, queue=settings.queue)
    task_id = uuid4()
    early = datetime.now(UTC) - timedelta(minutes=5)
    update = await producer.update_task(
        task_id=task_id, user_id=9, title="Arrived first", issued_at=early + timedelta(seconds=1)
    )
    job_id = str(update.command_id)
    letter = await wait_for(lambda: dead_letters(db, [job_id]), timeout=30, interval=0.2)
    assert "task not found" in letter[job_id]["reason"]
    assert letter[job_id]["category"] == "not_yet"

    await producer.create_task(task_id=task_id, user_id=9, title="Created late", issued_at=early)
    await wait_for(lambda: task_row(db, task_id), timeout=30)
    replayed = run_cli(settings, "taskline", "dead-letters", "replay", job_id, "--json")
    assert json.loads(replayed.stdout) == {"replayed": [job_id], "skipped": {}}
    await wait_for(lambda: processed_count(db, [update.command_id]), timeout=30)
    assert (await task_row(db, task_id))["title"] == "Arrived first"
    assert await dead_letters(db, [job_id]) == {}
    assert worker.proc.poll() is None


async def test_sigterm_finishes_running_jobs_exits_zero_and_loses_nothing(settings, redis, db, users, start_worker):
    """On SIGTERM the worker stops taking jobs, finishes its running ones and exits 0 within the grace."""
    grace = 5
    worker = start_worker(TASKLINE_SHUTDOWN_GRACE=str(grace))
    await started(worker)
    base = datetime.now(UTC) - timedelta(minutes=10)
    commands: list[Any] = []
    for n in range(1000):
        task_id, user_id = uuid4(), n % 20 + 1
        commands.append(
            CreateTask(command_id=uuid4(), issued_at=base, task_id=task_id, user_id=user_id, title=f"task {n}")
        )
        commands.append(
            UpdateTask(
                command_id=uuid4(),
                issued_at=base + timedelta(seconds=1),
                task_id=task_id,
                user_id=user_id,
                description=f"described {n}",
            )
        )
        if n % 2:
            commands.append(
                CompleteTask(
                    command_id=uuid4(), issued_at=base + timedelta(seconds=2), task_id=task_id, user_id=user_id
                )
            )
    ids = [c.command_id for c in commands]
    report = await TaskProducer(redis, queue=settings.queue).send_many(commands)
    assert report.queued == len(commands)

    await wait_for(lambda: _at_least(processed_count(db, ids), 100), timeout=30, interval=0.005)
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await wait_for(lambda: worker.proc.poll() is not None and (worker.proc.returncode,), timeout=grace + 10)
    took = time.monotonic() - signalled
    assert code == (0,), worker.log()
    # well before the claims' expiry; the margin holds on a busy 2-core machine (7.2 s was seen)
    assert took < grace + 5, f"exited after {took:.1f} s"
    log = worker.log()
    assert "stopping: finishing running jobs" in log
    assert "worker stopped" in log
    at_exit = await processed_count(db, ids)
    assert at_exit < len(ids), "the worker drained the whole queue: SIGTERM came too late to test anything"
    assert await redis.zcard(settings.queue) == len(ids) - at_exit
    in_progress = [f"arq:in-progress:{command_id}" for command_id in ids]
    assert await redis.exists(*in_progress) == 0, "a running job was abandoned instead of finished"

    start_worker()
    await wait_for(lambda: _equals(processed_count(db, ids), len(ids)), timeout=60)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0
    done = await db.fetchval(
        "SELECT count(*) FROM task WHERE id = ANY($1::uuid[]) AND description LIKE 'described %'",
        [c.task_id for c in commands if isinstance(c, CreateTask)],
    )
    assert done == 1000


async def _at_least(value: Any, minimum: int) -> bool:
    return (await value) >= minimum
