"""docs/signing.md's recipe for a service with no taskline client, run as written: a shell script
(tests/support/sign_and_enqueue.sh) writes the job, signs it with `openssl dgst -sha256 -hmac`
and enqueues it with redis-cli's plain commands; a worker that requires signatures applies it
under the key, and refuses by scope what the key may not send (by function, by user id)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from tests.acceptance.test_worker_process import dead_letters, started
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "sign_and_enqueue.sh"
KEY_ID = "shell-service"
SECRET = "5e1f" * 16
KEYS = {KEY_ID: {"secret": SECRET, "functions": ["create_task"], "user_ids": [4, 5]}}


def sign_and_enqueue(redis_url: str, queue: str, function: str, command: dict[str, Any], secret: str = SECRET) -> bytes:
    """Run the shell recipe for one command; the signed job it enqueued."""
    # The command's JSON as a service in another language might write it: spaces, raw UTF-8.
    text = json.dumps(command, ensure_ascii=False, separators=(", ", ": "))
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "QUEUE": queue,
        "KEY_ID": KEY_ID,
        "SECRET": secret,
        "FUNCTION": function,
        "COMMAND_ID": command["command_id"],
        "COMMAND": text,
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def command(user_id: int, task_id: UUID | None = None, **fields: Any) -> dict[str, Any]:
    issued = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    return {
        "command_id": str(uuid4()),
        "issued_at": issued,
        "task_id": str(task_id or uuid4()),
        "user_id": user_id,
        **fields,
    }


async def test_a_job_signed_with_openssl_and_enqueued_with_redis_cli_is_applied_within_its_scope(
    settings, redis_url, db, users, start_worker
):
    """The openssl-signed create (non-ASCII, quotes, a newline in its title) is applied and its
    processed command names the key; an update (a function outside the key's scope), a create for
    user 9 (outside its list) and a job signed with another secret are dead letters naming the
    key, and none of them is applied."""
    worker = start_worker(TASKLINE_SIGNING_KEYS=json.dumps(KEYS), TASKLINE_REQUIRE_SIGNATURES="true")
    await started(worker)
    title = 'Café "Zürich"\n'
    created = command(4, title=title)
    job = sign_and_enqueue(redis_url, settings.queue, "create_task", created)
    assert b'"sig":{"kid":"shell-service","mac":"' in job
    assert "Café".encode() in job  # raw UTF-8, as the service wrote it: the MAC covers these bytes

    update = command(4, UUID(created["task_id"]), title="changed")
    outside = command(9, title="for a user outside the key's list")
    forged = command(5, title="signed with another secret")
    sign_and_enqueue(redis_url, settings.queue, "update_task", update)
    sign_and_enqueue(redis_url, settings.queue, "create_task", outside)
    sign_and_enqueue(redis_url, settings.queue, "create_task", forged, secret="f" * 64)

    refused = [update["command_id"], outside["command_id"], forged["command_id"]]
    await wait_for(lambda: _all_dead(db, refused), timeout=60)
    await wait_for(lambda: _processed(db, created["command_id"]), timeout=60)

    letters = await dead_letters(db, refused)
    assert letters[update["command_id"]]["reason"].startswith(
        "out of scope: key 'shell-service' may not send update_task"
    ), letters[update["command_id"]]["reason"]
    assert letters[outside["command_id"]]["reason"].startswith(
        "out of scope: key 'shell-service' may not send create_task for user 9"
    ), letters[outside["command_id"]]["reason"]
    assert letters[forged["command_id"]]["reason"].startswith(
        "bad signature: the mac does not match key 'shell-service'"
    ), letters[forged["command_id"]]["reason"]
    assert {row["signed_by"] for row in letters.values()} == {KEY_ID}

    signed_by = await db.fetchval(
        "SELECT signed_by FROM processed_command WHERE command_id = $1", UUID(created["command_id"])
    )
    assert signed_by == KEY_ID
    assert await db.fetchval("SELECT title FROM task WHERE id = $1", UUID(created["task_id"])) == title
    others = [UUID(outside["task_id"]), UUID(forged["task_id"])]
    assert await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", others) == 0
    assert worker.proc.poll() is None, worker.log()


async def _all_dead(db: Any, job_ids: list[str]) -> bool:
    return len(await dead_letters(db, job_ids)) == len(job_ids)


async def _processed(db: Any, command_id: str) -> bool:
    found = await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", UUID(command_id))
    return int(found) == 1
