"""`taskline dead-letters replay|discard|show|list` against real worker processes and a real database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from taskline_producer import keys
from taskline_producer.wire import envelope, epoch_ms

from tests.acceptance.test_worker_process import dead_letters, raw_enqueue, run_cli, started
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

ROUNDS = 4
JOBS = 30


def _fast_failing_job(index: int, job_id: str) -> bytes:
    """Even: not JSON at all (a decode error); odd: a create_task that breaks the contract."""
    if index % 2 == 0:
        return b'{"f":"create_task","a":[{"title":'
    command = {"command_id": job_id, "issued_at": datetime.now(UTC).isoformat(), "user_id": "1", "title": ""}
    return envelope("create_task", command, epoch_ms())


async def _round_done(db: Any, redis: Any, queue: str, job_ids: list[str], since: datetime) -> bool:
    """Every job is back as a dead letter written after `since`, and none is left in Redis."""
    if await redis.zcard(queue) or await redis.exists(*[keys.job_key(job_id) for job_id in job_ids]):
        return False
    letters = await dead_letters(db, job_ids)
    return len(letters) == len(job_ids) and all(row["failed_at"] > since for row in letters.values())


async def test_replaying_fast_failing_jobs_round_after_round_loses_no_dead_letter(settings, redis, db, start_worker):
    """Jobs that fail again within milliseconds of their replay come back as exactly one dead
    letter per job id, round after round, with two workers racing the replay."""
    workers = [start_worker(), start_worker()]
    for worker in workers:
        await started(worker)
    job_ids = [str(uuid4()) for _ in range(JOBS)]
    for index, job_id in enumerate(job_ids):
        assert await raw_enqueue(redis, settings.queue, job_id, _fast_failing_job(index, job_id))
    await wait_for(lambda: _round_done(db, redis, settings.queue, job_ids, datetime.min.replace(tzinfo=UTC)))

    for round_number in range(1, ROUNDS + 1):
        since = await db.fetchval("SELECT now()")
        replayed = run_cli(settings, "taskline", "dead-letters", "replay", *job_ids, "--json")
        assert replayed.returncode == 0, replayed.stderr
        report = json.loads(replayed.stdout)
        assert sorted(report["replayed"]) == sorted(job_ids), (round_number, report)
        try:
            await wait_for(lambda since=since: _round_done(db, redis, settings.queue, job_ids, since), timeout=20)
        except AssertionError:
            left = await dead_letters(db, job_ids)
            raise AssertionError(f"round {round_number}: {len(left)} of {JOBS} dead letters are left") from None
        rows = await db.fetch(
            "SELECT job_id, count(*) FROM dead_letter WHERE job_id = ANY($1::text[]) GROUP BY job_id", job_ids
        )
        assert sorted((row["job_id"], row["count"]) for row in rows) == sorted((job_id, 1) for job_id in job_ids)
    for worker in workers:
        assert worker.proc.poll() is None, worker.log()


async def _insert_letters(db: Any, queue: str, job_ids: list[str]) -> None:
    await db.executemany(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
        " VALUES ($1, 'create_task', $2, $3, 'test: not JSON', 'permanent', 1, $4)",
        [(job_id, b"{", 1, queue) for job_id in job_ids],
    )


async def test_ids_can_be_given_by_a_unique_prefix_and_an_ambiguous_one_lists_the_candidates(settings, db):
    """show, replay and discard take a unique prefix of a job id; an ambiguous prefix is an
    error naming every candidate, and nothing is done."""
    stem = uuid4().hex[:12]
    ids = [f"{stem}-alpha-{uuid4()}", f"{stem}-beta-{uuid4()}", f"{stem}-beta-{uuid4()}"]
    await _insert_letters(db, settings.queue, ids)

    shown = run_cli(settings, "taskline", "dead-letters", "show", f"{stem}-al", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["job_id"] == ids[0]

    for command in ("show", "replay", "discard"):
        ambiguous = run_cli(settings, "taskline", "dead-letters", command, f"{stem}-be")
        assert ambiguous.returncode == 2, (command, ambiguous.stdout, ambiguous.stderr)
        assert ids[1] in ambiguous.stderr, ambiguous.stderr
        assert ids[2] in ambiguous.stderr, ambiguous.stderr
        assert "Traceback" not in ambiguous.stderr
    assert set(await dead_letters(db, ids)) == set(ids)

    unknown = run_cli(settings, "taskline", "dead-letters", "replay", f"{stem}-gamma")
    assert unknown.returncode == 1
    assert "no dead letter" in unknown.stderr

    replayed = run_cli(settings, "taskline", "dead-letters", "replay", f"{stem}-al", "--json")
    assert json.loads(replayed.stdout) == {"replayed": [ids[0]], "skipped": {}}
    discarded = run_cli(settings, "taskline", "dead-letters", "discard", ids[1][:-4], "--json")
    assert json.loads(discarded.stdout) == {"discarded": 1}
    assert set(await dead_letters(db, ids)) == {ids[2]}


async def test_replay_and_discard_of_everything_ask_first_and_refuse_without_a_terminal(settings, db, redis):
    """With no id and no filter, replay and discard refuse without a terminal unless --yes;
    --dry-run lists what would happen and changes nothing."""
    ids = [f"everything-{uuid4()}" for _ in range(3)]
    await _insert_letters(db, settings.queue, ids)

    for command in ("replay", "discard"):
        refused = run_cli(settings, "taskline", "dead-letters", command)
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert "--yes" in refused.stderr
    assert set(await dead_letters(db, ids)) == set(ids)

    dry = run_cli(settings, "taskline", "dead-letters", "replay", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    preview = json.loads(dry.stdout)
    assert preview["dry_run"] is True
    assert set(ids) <= set(preview["would_replay"])
    dry = run_cli(settings, "taskline", "dead-letters", "discard", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would discard" in dry.stdout
    assert all(job_id in dry.stdout for job_id in ids)
    assert set(await dead_letters(db, ids)) == set(ids)
    assert not await redis.exists(*[keys.job_key(job_id) for job_id in ids])

    replayed = run_cli(settings, "taskline", "dead-letters", "replay", "--yes", "--reason", "test: not JSON", "--json")
    assert set(ids) <= set(json.loads(replayed.stdout)["replayed"])
    assert await redis.exists(*[keys.job_key(job_id) for job_id in ids]) == len(ids)


async def test_the_list_shows_whole_job_ids_at_80_columns(settings, db):
    """The list never cuts a job id at 80 columns, so it can be pasted back into show/replay/discard:
    a UUID fits the table, a longer id gets a line of its own."""
    uuid_id, long_id = str(uuid4()), f"a-rather-long-job-id-{uuid4()}-{uuid4()}"
    await db.executemany(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue)"
        " VALUES ($1, 'create_task', '{', 1, $2, 'permanent', 1, $3)",
        [(job_id, f"test: marked {job_id[-12:]}", settings.queue) for job_id in (uuid_id, long_id)],
    )
    for job_id in (uuid_id, long_id):
        listed = run_cli_with(settings, {"COLUMNS": "80"}, "dead-letters", "list", "--reason", job_id[-12:])
        assert listed.returncode == 0, listed.stderr
        assert job_id in listed.stdout, listed.stdout
        assert max(len(line) for line in listed.stdout.splitlines()) <= max(80, len(job_id)), listed.stdout


def run_cli_with(settings: Any, env: dict[str, str], *args: str) -> Any:
    import subprocess

    from tests.acceptance.test_worker_process import BIN
    from tests.conftest import worker_env

    return subprocess.run(
        [str(BIN / "taskline"), *args],
        env={**worker_env(settings), **env, "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
