"""Every listing fits 80 columns when piped (COLUMNS=80, and with no COLUMNS at all) and loses no
word: `dead-letters list` and `show`, `status`, `trace` of a command and of a task, `health`.
`trace` takes the id prefixes `dead-letters` takes, and an ambiguous one lists its candidates."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import TaskProducer, keys

from tests.conftest import wait_for, worker_env

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent
REASON = (
    "forbidden: the user 2 does not own the task it names; a long reason that a person must read"
    " whole, with every word of it kept however narrow the screen is, and nothing cut short at all"
)


def taskline(settings: Any, *args: str, columns: str | None = "80") -> subprocess.CompletedProcess[str]:
    env = worker_env(settings)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [str(BIN / "taskline"), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def assert_fits(result: subprocess.CompletedProcess[str], width: int = 80) -> str:
    """Exit 0, no line wider than `width`; the output's words, joined by single spaces."""
    assert result.returncode == 0, result.stderr
    too_wide = [line for line in result.stdout.splitlines() if len(line) > width]
    assert not too_wide, result.stdout
    return " ".join(result.stdout.split())


async def add_dead_letter(db: Any, queue: str, job_id: str, reason: str = REASON) -> None:
    await db.execute(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
        " VALUES ($1, 'update_task', '{\"task_id\": \"x\"}', 16, $2, 'permanent', 3, $3)",
        job_id,
        reason,
        queue,
    )


@pytest.mark.parametrize("columns", ["80", None], ids=["COLUMNS=80", "piped"])
async def test_every_listing_fits_80_columns_and_keeps_the_whole_reason(
    settings, db, redis, users, start_worker, columns
):
    """dead-letters list/show, status, trace (command and task) and health --all: no line over 80
    columns, the job id whole, every word of the reason there in order."""
    worker = start_worker(TASKLINE_HEARTBEAT_INTERVAL="0.5")
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    job_id = str(uuid4())
    await add_dead_letter(db, settings.queue, job_id)
    receipt = await TaskProducer(redis, queue=settings.queue).create_task(user_id=1, title="measured")
    await wait_for(lambda: db.fetchval("SELECT 1 FROM task WHERE id = $1", receipt.task_id), timeout=60)
    worker_ids = await wait_for(lambda: redis.zrange(keys.workers_index_key(settings.queue), 0, -1), timeout=30)

    listed = assert_fits(await asyncio.to_thread(taskline, settings, "dead-letters", "list", columns=columns))
    assert job_id in listed
    assert REASON in listed, listed
    show = ("dead-letters", "show", job_id[:8])
    shown = assert_fits(await asyncio.to_thread(taskline, settings, *show, columns=columns))
    assert REASON in shown
    status = assert_fits(await asyncio.to_thread(taskline, settings, "status", columns=columns))
    assert "in all; the last 24 hours by function and kind" in status
    assert "forbidden:" in status
    assert worker_ids[0].decode() in status  # whole, never "vm:226…"
    traced = assert_fits(await asyncio.to_thread(taskline, settings, "trace", job_id, columns=columns))
    assert REASON in traced
    task_prefix = str(receipt.task_id)[:13]
    story = assert_fits(await asyncio.to_thread(taskline, settings, "trace", task_prefix, columns=columns))
    assert f"task {receipt.task_id}" in story
    assert str(receipt.command_id) in story
    assert "title 'measured', no description" in story
    health = assert_fits(await asyncio.to_thread(taskline, settings, "health", "--all", columns=columns))
    assert "ok: 1 live worker(s)" in health
    assert worker.stop() == 0


async def test_trace_takes_a_prefix_and_lists_the_candidates_of_an_ambiguous_one(settings, db):
    """A unique prefix is traced as the whole id; one shared by several ids exits 2 listing them,
    in the shared error shape; one that starts nothing exits 1."""
    stem = f"prefix-{uuid4().hex[:8]}"
    first, second = f"{stem}-alpha-1", f"{stem}-beta-2"
    for job_id in (first, second):
        await add_dead_letter(db, settings.queue, job_id, reason=f"test: {job_id}")

    for prefix, whole in ((f"{stem}-al", first), (f"{stem}-b", second)):
        unique = await asyncio.to_thread(taskline, settings, "trace", prefix, "--json")
        assert unique.returncode == 0, unique.stderr
        assert json.loads(unique.stdout)["id"] == whole

    ambiguous = await asyncio.to_thread(taskline, settings, "trace", stem)
    assert ambiguous.returncode == 2, ambiguous.stdout
    assert ambiguous.stderr.startswith(f"error: '{stem}' is the start of several ids: {first}, {second}")
    assert ambiguous.stderr.splitlines()[1] == "  Give more of the id."

    unknown = await asyncio.to_thread(taskline, settings, "trace", f"nothing-{uuid4()}")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: nothing knows")


async def test_every_json_output_is_json(settings, db, users, start_worker, tmp_path):
    """With --json, each command that prints data prints JSON documents only (one per line), with
    the fields its text shows: demo, migrate, status, health, trace, the dead-letter commands,
    purge, send and send stream."""
    worker = start_worker(TASKLINE_HEARTBEAT_INTERVAL="0.5")
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    job_id = str(uuid4())
    await add_dead_letter(db, settings.queue, job_id)
    stream = tmp_path / "one.jsonl"
    stream.write_text(
        json.dumps({"function": "create_task", "command": {"task_id": str(uuid4()), "user_id": 1, "title": "json"}})
        + "\n"
    )
    expected = {
        ("demo", "--wait", "30"): "tasks",
        ("migrate",): "migrated_to",
        ("status",): "workers",
        ("health", "--all"): "workers",
        ("trace", job_id): "dead_letter",
        ("dead-letters", "list", "--function", "update_task"): "reason",
        ("dead-letters", "show", job_id): "payload",
        ("dead-letters", "replay", job_id, "--dry-run"): "would_replay",
        ("dead-letters", "discard", job_id, "--dry-run"): "would_discard",
        ("purge", "--dry-run"): "rows",
        ("send", "create", "--user-id", "1", "--title", "json"): "command_id",
        ("send", "stream", str(stream), "--wait", "30"): "outcomes",
    }
    for args, field in expected.items():
        result = await asyncio.to_thread(taskline, settings, *args, "--json")
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        documents = [json.loads(line) for line in result.stdout.splitlines()]
        assert documents, args
        assert all(field in document for document in documents), (args, documents)
    assert worker.stop() == 0


async def test_status_watch_into_a_pipe_prints_each_reading_whole_at_80_columns(
    settings, redis, start_worker, tmp_path
):
    """`status --watch` piped prints one reading after another, each within 80 columns with the
    worker's id whole (never "vm:226…"); Ctrl-C ends it with exit 0 while every service answers.
    `health --worker-id` takes the start of that id."""
    worker = start_worker(TASKLINE_HEARTBEAT_INTERVAL="0.5")
    worker_ids = await wait_for(lambda: redis.zrange(keys.workers_index_key(settings.queue), 0, -1), timeout=30)
    output = tmp_path / "watch.txt"
    env = worker_env(settings) | {"COLUMNS": "80"}
    with output.open("w") as sink:
        process = subprocess.Popen(  # noqa: ASYNC220 (started once, read from its file)
            [str(BIN / "taskline"), "status", "--watch", "--every", "0.3"],
            env=env,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        await wait_for(lambda: output.read_text().count("commands ") >= 2, timeout=60, interval=0.2)
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, stderr
    text = output.read_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert worker_ids[0].decode() in text
    assert "…" not in text
    whole = worker_ids[0].decode()
    probe = await asyncio.to_thread(taskline, settings, "health", "--worker-id", whole[:-2], "--json")
    assert probe.returncode == 0, probe.stderr
    assert [w["worker_id"] for w in json.loads(probe.stdout)["workers"]] == [whole]  # a prefix will do
    assert worker.stop() == 0
