"""Every CLI command, with PostgreSQL or Redis unreachable or refusing it, says so in a line or
two naming the setting and the URL (without its password), the error and what to try, and
exits 1; no traceback unless --debug."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import worker_env

pytestmark = pytest.mark.acceptance

BIN = Path(sys.executable).parent
SECRET = "s3cret-pw"
DEAD_DATABASE = f"postgresql://postgres:{SECRET}@127.0.0.1:1/taskline"
DEAD_REDIS = f"redis://:{SECRET}@127.0.0.1:1/0"
TASK = "00000000-0000-4000-8000-0000000000aa"  # fixed: test ids must be the same in every pytest-xdist process

# (program, arguments, the services it needs)
COMMANDS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("taskline", ("migrate",), ("DATABASE_URL",)),
    ("taskline", ("purge",), ("DATABASE_URL",)),
    ("taskline", ("purge", "--dry-run"), ("DATABASE_URL",)),
    ("taskline", ("dead-letters", "list"), ("DATABASE_URL",)),
    ("taskline", ("dead-letters", "show", "JOB_ID"), ("DATABASE_URL",)),
    ("taskline", ("dead-letters", "replay", "JOB_ID"), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("dead-letters", "discard", "JOB_ID"), ("DATABASE_URL",)),
    ("taskline", ("demo",), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("health",), ("REDIS_URL",)),
    ("taskline", ("health", "--ready", "--all", "--json"), ("REDIS_URL",)),
    ("taskline", ("metrics",), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("status",), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("status", "--json"), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("trace", "JOB_ID"), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("trace", "JOB_ID", "--json"), ("DATABASE_URL", "REDIS_URL")),
    ("taskline", ("dead-letters", "list", "--json"), ("DATABASE_URL",)),
    ("taskline", ("purge", "--json"), ("DATABASE_URL",)),
    ("taskline", ("send", "create", "--user-id", "1", "--title", "t"), ("REDIS_URL",)),
    ("taskline", ("send", "update", "--task-id", TASK, "--user-id", "1", "--title", "t"), ("REDIS_URL",)),
    ("taskline", ("send", "complete", "--task-id", TASK, "--user-id", "1"), ("REDIS_URL",)),
    ("taskline", ("send", "stream", "COMMANDS_FILE"), ("REDIS_URL",)),
    ("taskline-send", ("create", "--user-id", "1", "--title", "t"), ("REDIS_URL",)),
    ("taskline-send", ("update", "--task-id", TASK, "--user-id", "1", "--title", "t"), ("REDIS_URL",)),
    ("taskline-send", ("complete", "--task-id", TASK, "--user-id", "1"), ("REDIS_URL",)),
    ("taskline-send", ("stream", "COMMANDS_FILE"), ("REDIS_URL",)),
    ("taskline-send", ("stream", "COMMANDS_FILE", "--wait", "5"), ("REDIS_URL",)),
]

CASES = [
    pytest.param(program, args, setting, id=f"{program} {' '.join(args)} / {setting} down")
    for program, args, needs in COMMANDS
    for setting in needs
]


def run(settings: Any, tmp_path: Path, program: str, args: tuple[str, ...], job_id: str = "", **env: str) -> Any:
    commands = tmp_path / "commands.jsonl"
    line = {"function": "create_task", "command": {"task_id": TASK, "user_id": 1, "title": "t"}}
    commands.write_text(json.dumps(line) + "\n")
    argv = [str(commands) if arg == "COMMANDS_FILE" else job_id if arg == "JOB_ID" else arg for arg in args]
    return subprocess.run(
        [str(BIN / program), *argv],
        env=worker_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(("program", "args", "setting"), CASES)
async def test_an_unreachable_service_is_named_with_its_setting_and_what_to_try(
    settings, db, tmp_path, program, args, setting
):
    """The command exits 1 with a short message naming the setting and its redacted URL (a
    command that prints what it could read, such as `status`, prints it first)."""
    job_id = f"outage-{uuid4()}"  # a dead letter to show, replay or discard
    await db.execute(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
        " VALUES ($1, 'create_task', '{}', 2, 'test', 'permanent', 1, $2)",
        job_id,
        settings.queue,
    )
    dead = DEAD_DATABASE if setting == "DATABASE_URL" else DEAD_REDIS
    result = await asyncio.to_thread(run, settings, tmp_path, program, args, job_id, **{setting: dead})
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr if "--json" not in args else result.stderr + result.stdout
    assert setting in message, message
    assert dead.replace(SECRET, "***") in message, message
    assert SECRET not in result.stderr + result.stdout
    assert "Is " in message, message  # what to try
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


@pytest.mark.parametrize(
    ("setting", "url", "expected"),
    [
        ("DATABASE_URL", f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_db_{uuid4().hex[:8]}", "createdb"),
        ("DATABASE_URL", f"postgresql://no_such_role:{SECRET}@127.0.0.1:5432/postgres", "user and password"),
        ("REDIS_URL", f"redis://:{SECRET}@127.0.0.1:6379/0", "user and password"),
    ],
    ids=["no-such-database", "no-such-role", "redis-wrong-password"],  # stable ids: the URL has a random part
)
def test_a_service_that_refuses_is_explained_too(settings, tmp_path, setting, url, expected):
    """A missing database, an unknown role and a refused Redis password each get their own advice."""
    args = ("dead-letters", "list") if setting == "DATABASE_URL" else ("health",)
    result = run(settings, tmp_path, "taskline", args, **{setting: url})
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr, result.stderr
    assert url.replace(SECRET, "***") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("debug", [("--debug",), ()], ids=["--debug", "TASKLINE_LOG_LEVEL=DEBUG"])
def test_debug_adds_the_traceback(settings, tmp_path, debug):
    """--debug (anywhere on the command line) or TASKLINE_LOG_LEVEL=DEBUG print the traceback too."""
    env = {"DATABASE_URL": DEAD_DATABASE} | ({} if debug else {"TASKLINE_LOG_LEVEL": "DEBUG"})
    result = run(settings, tmp_path, "taskline", ("dead-letters", "list", *debug), **env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ConnectionRefusedError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].lstrip().startswith("Is PostgreSQL running")
