"""Every job ends: hostile and out-of-range envelopes pushed to a real worker process.

Hypothesis generates job payloads with every member at and beyond its range (huge numbers,
negative numbers, wrong types, odd strings, extra members, broken JSON) under odd job ids,
writes them straight into Redis the way any producer could, and a real worker runs them. Each
job must end as a task change (the command is recorded as processed) or a dead letter within the
not-yet window, and the worker must never take one for a lost connection or restart its loop.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from taskline_producer import keys
from taskline_producer.wire import epoch_ms

from tests.conftest import wait_for

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),  # the batch's repr is large
]

HUGE = st.sampled_from([2**31, 2**53 + 1, 2**63, 10**30, -(10**30), -1, 0])
ODD_TEXT = st.sampled_from(["", " ", "\x00", "\ud800", "é" * 201, "x" * 70_000, "🙂", "null", "[]"])
ODD_VALUE = st.one_of(HUGE, ODD_TEXT, st.none(), st.booleans(), st.floats(allow_nan=False), st.just([]), st.just({}))
TIMES = st.sampled_from(
    [
        "2026-11-29T10:00:00Z",
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999+14:00",
        "2026-11-29T10:00:00",  # no offset
        "2026-11-29T10:00:00.1234567Z",  # seven fractional digits
        "2026-13-40T25:61:61Z",
        "yesterday",
    ]
)


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    command: dict[str, Any] = {
        "command_id": str(uuid.uuid4()),
        "issued_at": draw(TIMES),
        "task_id": str(uuid.uuid4()),
        "user_id": draw(st.one_of(st.just(1), HUGE, ODD_VALUE)),
        "title": draw(st.one_of(st.just("a title"), ODD_TEXT)),
    }
    for member in draw(st.lists(st.sampled_from(sorted(command)), max_size=2)):
        command[member] = draw(ODD_VALUE)
    if draw(st.booleans()):
        command[draw(st.sampled_from(["extra", "description", "completed"]))] = draw(ODD_VALUE)
    return command


def _uuid_or_new(value: Any) -> str:
    """The command id when it is a UUID the worker could record, else a fresh one (no job has it)."""
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError, AttributeError):
        return str(uuid.uuid4())


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """A job id, the bytes under its job key, and the id its command's end is recorded under."""
    function = draw(
        st.sampled_from(["create_task", "update_task", "complete_task", "apply_commands", "nope", "x" * 500])
    )
    command = draw(commands())
    argument: Any = [{"function": "create_task", "command": command}] if function == "apply_commands" else command
    job: dict[str, Any] = {"f": function, "a": [argument], "k": {}, "t": None, "et": epoch_ms()}
    for member in draw(st.lists(st.sampled_from(["f", "a", "k", "t", "et", "extra"]), max_size=2)):
        job[member] = draw(st.one_of(HUGE, ODD_VALUE))
    if draw(st.booleans()):
        job.pop(draw(st.sampled_from(sorted(job))), None)
    raw = json.dumps(job, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated JSON
    own_id = _uuid_or_new(command["command_id"])
    job_id = draw(
        st.sampled_from([own_id, str(uuid.uuid4()), "job with spaces " + uuid.uuid4().hex, "ü-" + uuid.uuid4().hex])
    )
    return job_id, raw, own_id


@pytest.fixture
def poison_worker(start_worker: Any) -> Any:
    # A short not-yet window: updates for tasks that never come are dead-lettered within seconds.
    return start_worker(TASKLINE_NOT_YET_WINDOW="2", TASKLINE_POLL_DELAY="0.1")


@hypothesis_settings(
    max_examples=6,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # each example costs seconds of a real worker: report, do not shrink
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(payloads(), min_size=80, max_size=80, unique_by=lambda job: job[0]))
async def test_every_hostile_job_ends_applied_or_dead_lettered(batch, poison_worker, redis, db, settings, users):
    """Each job ends applied or dead-lettered, and the worker never logs a lost connection for one."""
    now = epoch_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, raw, _ in batch:
            pipe.set(keys.job_key(job_id), raw, px=600_000)
            pipe.zadd(settings.queue, {job_id: now})
        await pipe.execute()

    async def has_ended(job_id: str, command_id: str) -> bool:
        """A dead letter under the job id (or, for the item of a bulk job, its command id, or the
        job id and its index when the item has none), or the command recorded as processed."""
        return bool(
            await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM dead_letter WHERE job_id = ANY($1::text[]))"
                " OR EXISTS (SELECT 1 FROM processed_command WHERE command_id::text = $2)",
                [job_id, command_id, f"{job_id}#0"],
                command_id,
            )
        )

    async def ended() -> bool:
        if await redis.zcard(settings.queue):
            return False
        return all([await has_ended(job_id, command_id) for job_id, _, command_id in batch])

    try:
        await wait_for(ended, timeout=45, interval=0.2)
    except AssertionError:
        left = [job for job, _, command in batch if not await has_ended(job, command)]
        pytest.fail(f"jobs not ended: {left}\n{poison_worker.log()[-3000:]}")
    for job_id, _, command_id in batch:
        assert await has_ended(job_id, command_id), f"job {job_id!r} neither applied nor dead-lettered"
        assert await redis.exists(keys.job_key(job_id), keys.in_progress_key(job_id)) == 0
    log = poison_worker.log()
    assert "lost the connection" not in log
    assert "worker loop failed" not in log
    assert poison_worker.proc.poll() is None
