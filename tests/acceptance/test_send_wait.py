"""`taskline-send … --wait` against a real worker process: the outcome printed, the exit code set by it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import wait_for, worker_env

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent


def send(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "taskline-send"), *args], env=worker_env(settings), capture_output=True, text=True, timeout=60
    )


async def test_send_wait_prints_the_outcome_and_exits_by_it(settings, db, users, start_worker):
    """applied: exit 0; dead letter: exit 4 with the reason; the applied command sent again:
    `duplicate`, exit 0; its command_id reused for another command: exit 4 saying so; no worker
    to answer in time: exit 5, last state queued."""
    worker = start_worker()
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    task_id = str(uuid4())

    applied = send(settings, "create", "--user-id", "1", "--title", "waited for", "--task-id", task_id, "--wait")
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert (result["status"], result["outcome"]["state"]) == ("queued", "applied")
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", task_id) == "waited for"

    clash = send(settings, "create", "--user-id", "1", "--title", "again", "--task-id", task_id, "--wait", "20")
    assert clash.returncode == 4, clash.stderr
    outcome = json.loads(clash.stdout)["outcome"]
    assert outcome["state"] == "dead_letter"
    assert outcome["reason"].startswith("conflict")
    assert "dead-lettered: conflict" in clash.stderr

    # The applied create sent again (the command line stamps a new issued_at): its own outcome,
    # `duplicate`, not the first send's `applied`; under that id, a complete is another command.
    command_id = result["command_id"]
    resend = ("create", "--user-id", "1", "--title", "waited for", "--task-id", task_id, "--command-id", command_id)
    again = send(settings, *resend, "--wait", "20")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["outcome"]["state"] == "duplicate"
    reused = send(settings, "complete", "--user-id", "1", "--task-id", task_id, "--command-id", command_id, "--wait")
    assert reused.returncode == 4, reused.stderr
    assert json.loads(reused.stdout)["outcome"]["reason"].startswith("command_id reused")

    assert worker.stop() == 0
    late = send(settings, "complete", "--task-id", task_id, "--user-id", "1", "--wait", "0.5")
    assert late.returncode == 5, late.stderr
    result = json.loads(late.stdout)
    assert (result["outcome"]["state"], result["timed_out_after_s"]) == ("queued", 0.5)
    assert "no final outcome after 0.5 s; last seen: queued" in late.stderr


def stream_file(tmp_path: Path, name: str, commands: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(command) + "\n" for command in commands))
    return str(path)


def create_line(task_id: str, title: str, user_id: int = 1) -> dict[str, Any]:
    return {"function": "create_task", "command": {"task_id": task_id, "user_id": user_id, "title": title}}


async def test_stream_wait_follows_every_command_and_exits_by_the_worst(settings, db, users, start_worker, tmp_path):
    """`stream FILE --wait`: all applied, exit 0 with a summary; one dead letter among them, exit 4
    naming its line and reason; no worker, exit 5 naming what timed out; `--json` gives the same
    summary as one object."""
    worker = start_worker()
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    tasks = [str(uuid4()) for _ in range(3)]

    good = stream_file(tmp_path, "good.jsonl", [create_line(task, f"streamed {n}") for n, task in enumerate(tasks)])
    result = send(settings, "stream", good, "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert "sent 3, refused as duplicates 0, invalid 0" in result.stdout
    assert "outcomes: 3 applied, 0 duplicate, 0 dead_letter, 0 timed out" in result.stdout
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", tasks) == 3

    clash = stream_file(tmp_path, "clash.jsonl", [create_line(str(uuid4()), "fine"), create_line(tasks[0], "again")])
    result = send(settings, "stream", clash, "--wait", "30", "--json")
    assert result.returncode == 4, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcomes"] == {"applied": 1, "dead_letter": 1}
    assert [(d["line"], d["reason"].split(":")[0]) for d in summary["dead_letters"]] == [(2, "conflict")]
    assert summary["timed_out"] == []

    assert worker.stop() == 0
    late = stream_file(tmp_path, "late.jsonl", [create_line(str(uuid4()), "nobody works")])
    result = send(settings, "stream", late, "--wait", "0.5")
    assert result.returncode == 5, result.stderr
    assert "0 dead_letter, 1 timed out" in result.stdout
    assert "line 1: no final outcome in time (last seen: queued)" in result.stderr
