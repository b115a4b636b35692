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
