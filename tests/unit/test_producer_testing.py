"""taskline_producer.testing: a recording producer that sends what the real one sends, refuses what
a worker refuses, and assertions that show the decoded commands."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from uuid import UUID, uuid4

import fakeredis
import pytest
from pydantic import ValidationError
from taskline_producer import SigningKey, TaskProducer
from taskline_producer.contract import COMMAND_MODELS, CreateTask, UpdateTask
from taskline_producer.testing import ABSENT, RecordingProducer, WouldBeRefused, inspect_job
from taskline_producer.testing.memory_redis import MemoryRedis
from taskline_producer.wire import job_of_command

from tests.contract_cases import CASES, ContractCase
from worker.config.signing_keys import KeyConfig
from worker.pipeline.decode import REJECT_JOB, Decoder
from worker.pipeline.signatures import Verifier

KEY = SigningKey.of("billing-1", "s" * 40)
TASK = UUID("0b6f9b5e-3c1e-4a8e-9f00-7d2b4c1a9e11")
ISSUED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
WORKER = Decoder(max_payload_bytes=65536, max_bulk_payload_bytes=1024 * 1024)


def worker_refusal(raw: bytes) -> str | None:
    """The worker decoder's dead-letter reason for these bytes, or None when it would run them."""
    decoded = WORKER(raw)
    return decoded["a"][0].reason if decoded["f"] == REJECT_JOB else None


def case_id(case: ContractCase) -> str:
    return case.name


# -- the contract's cases: the same verdicts as the worker's ---------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_each_contract_case_is_judged_as_the_worker_judges_it(case: ContractCase) -> None:
    """inspect_job (what the recording producer applies to every job) accepts a case exactly when the
    worker's decoder does, and a refusal names the case's member, as the worker's reason does."""
    raw = case.job()
    worker_reason = worker_refusal(raw)
    assert (worker_reason is None) == case.valid, worker_reason
    if case.valid:
        (command,) = inspect_job(raw, job_id="j", queue="q", future_tolerance_s=None).commands
        assert command.model_dump(mode="json", exclude_unset=True) == WORKER(raw)["a"][0].command.model_dump(
            mode="json", exclude_unset=True
        )
        return
    with pytest.raises(WouldBeRefused) as refused:
        inspect_job(raw, job_id="j", queue="q", future_tolerance_s=None)
    if case.field is not None:
        assert refused.value.field == case.field, refused.value.reason
        assert case.field in str(worker_reason)


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_each_contract_case_reaching_the_recording_producers_redis_is_kept_or_refused(
    case: ContractCase,
) -> None:
    """A case's job bytes arriving at the recording producer's Redis (as any producer's would) raise
    WouldBeRefused, leaving nothing queued, exactly for the cases a worker refuses."""
    producer = RecordingProducer(future_tolerance_s=None)  # some cases are dated years ahead
    if case.valid:
        producer.memory.enqueue(producer.queue, [1, 1000, "job-1", case.job()])
        assert producer.assert_sent(case.function).job.raw == case.job()
        return
    with pytest.raises(WouldBeRefused):
        producer.memory.enqueue(producer.queue, [1, 1000, "job-1", case.job()])
    assert producer.jobs == []
    assert producer.memory.strings == {}


@pytest.mark.parametrize("case", CASES, ids=case_id)
async def test_each_contract_case_through_the_python_api_is_refused_or_sent_and_found(case: ContractCase) -> None:
    """Built as a command model from the case's members, a case is refused (ValidationError) exactly
    when the worker refuses it; an accepted one is sent and `assert_sent` finds it by every member."""
    producer = RecordingProducer(future_tolerance_s=None)  # some cases are dated years ahead
    model = COMMAND_MODELS[case.function]
    if not case.valid:
        with pytest.raises(ValidationError):
            model.model_validate(case.command)
        return
    await producer.send(model.model_validate(case.command))
    sent = producer.assert_sent(case.function, **case.command)
    assert sent.fields() == json.loads(json.dumps(sent.command.model_dump(mode="json", exclude_unset=True)))


# -- the same producer as the real one -------------------------------------------------------------


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "signed"])
async def test_the_recorded_bytes_are_the_real_producers_bytes(key: SigningKey | None, monkeypatch: Any) -> None:
    """With the clock fixed, every job the recording producer keeps is byte for byte the job the real
    TaskProducer writes into Redis, signed or not: single, many and bulk sends alike."""
    monkeypatch.setattr("taskline_producer.client.epoch_ms", lambda: 1_764_063_000_000)
    real = TaskProducer(fakeredis.FakeAsyncRedis(), signing_key=key)
    recording = RecordingProducer(signing_key=key)
    commands = [
        CreateTask(command_id=uuid4(), issued_at=ISSUED, task_id=TASK, user_id=7, title="Write it"),
        UpdateTask(command_id=uuid4(), issued_at=ISSUED, task_id=TASK, user_id=7, description=None),
    ]
    bulk_id = str(uuid4())
    for producer in (real, recording):
        await producer.create_task(
            user_id=7, title="One", task_id=TASK, command_id=commands[0].command_id, issued_at=ISSUED
        )
        await producer.send_many(commands[1:], outcome_ttl=60)
        await producer.send_bulk(commands, job_id=bulk_id)
    for job in recording.jobs:
        assert await real.redis.get(f"arq:job:{job.job_id}") == job.raw
    assert [job.signed_by for job in recording.jobs] == [key.key_id if key else None] * 3
    await real.redis.aclose()


async def test_a_command_the_real_producer_refuses_is_refused_the_same_way() -> None:
    """The typed calls validate as the real producer's do: the same ValidationError, nothing sent."""
    producer = RecordingProducer()
    with pytest.raises(ValidationError, match="user_id"):
        await producer.create_task(user_id=0, title="t")
    with pytest.raises(ValidationError, match="at least one of title or description"):
        await producer.update_task(task_id=TASK, user_id=1)
    assert producer.jobs == []


async def test_a_command_built_without_validation_is_refused_as_the_worker_would() -> None:
    """A model built with model_construct (no validation) goes out of the real producer unchecked; the
    recording producer raises WouldBeRefused naming the member, and keeps nothing."""
    producer = RecordingProducer()
    bad = CreateTask.model_construct(command_id=uuid4(), issued_at=ISSUED, task_id=TASK, user_id=7, title="")
    with pytest.raises(WouldBeRefused, match="title") as refused:
        await producer.send(bad)
    assert refused.value.field == "title"
    assert producer.jobs == []


async def test_issued_at_too_far_ahead_is_refused_with_the_workers_tolerance() -> None:
    """issued_at more than the future tolerance (default an hour) ahead of the clock is refused; within
    it, it is sent. The clock and the tolerance can be given."""
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    producer = RecordingProducer(clock=lambda: now)
    await producer.complete_task(task_id=TASK, user_id=1, issued_at=now + timedelta(minutes=59))
    with pytest.raises(WouldBeRefused, match="ahead of the worker's clock"):
        await producer.complete_task(task_id=TASK, user_id=1, issued_at=now + timedelta(minutes=61))
    lenient = RecordingProducer(clock=lambda: now, future_tolerance_s=7200)
    await lenient.complete_task(task_id=TASK, user_id=1, issued_at=now + timedelta(minutes=61))


async def test_an_oversized_bulk_job_is_refused_by_the_workers_bulk_limit() -> None:
    """A send_bulk whose job exceeds the bulk size limit raises WouldBeRefused (the worker would
    dead-letter it unread); the limit is the workers' setting, given to the producer."""
    producer = RecordingProducer(max_bulk_payload_bytes=4096)
    commands = [CreateTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=1, title="x" * 200)] * 30
    with pytest.raises(WouldBeRefused, match="bytes; the workers' limit is 4096"):
        await producer.send_bulk(commands)


# -- duplicates, bulk, outcomes --------------------------------------------------------------------


async def test_a_resend_of_a_queued_command_is_refused_as_a_duplicate_and_not_counted() -> None:
    """Sending the same command id twice: the second receipt says not queued, assert_sent counts one,
    and queued=False finds the refused one."""
    producer = RecordingProducer()
    first = await producer.create_task(user_id=7, title="Once")
    again = await producer.create_task(user_id=7, title="Once", command_id=first.command_id)
    assert (first.queued, again.queued) == (True, False)
    producer.assert_sent("create_task", title="Once", count=1)
    producer.assert_sent("create_task", title="Once", queued=False)
    assert len(producer.commands("create_task", queued=None)) == 2


async def test_bulk_items_are_commands_of_their_own_inside_one_job() -> None:
    """Each item of a send_bulk is found by its own function and fields, marked as sent in bulk."""
    producer = RecordingProducer()
    commands = [CreateTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=u, title="b") for u in (1, 2)]
    receipt = await producer.send_bulk(commands)
    item = producer.assert_sent("create_task", user_id=2)
    assert (item.in_bulk, item.job.job_id, item.job.function) == (True, receipt.job_id, "apply_commands")
    producer.assert_sent("create_task", title="b", count=2)


async def test_settle_gives_waiting_code_the_outcome_a_worker_would_write() -> None:
    """A command sent with outcome_ttl and settled as a dead letter: receipt.outcome() returns that,
    with the reason; settling one sent without outcome_ttl is refused."""
    producer = RecordingProducer()
    receipt = await producer.create_task(user_id=7, title="t", outcome_ttl=60)
    producer.settle(receipt.command_id, "dead_letter", reason="user not found")
    outcome = await receipt.outcome(timeout=5)
    assert (outcome.state, outcome.reason) == ("dead_letter", "user not found")
    plain = await producer.create_task(user_id=7, title="t")
    with pytest.raises(ValueError, match="without outcome_ttl"):
        producer.settle(plain.command_id)


# -- assertions ------------------------------------------------------------------------------------


async def test_field_values_match_in_the_spellings_a_test_writes() -> None:
    """UUIDs as text in any case, issued_at as RFC 3339 text, ANY, predicates, and ABSENT for an
    update member left out (not the same as null) all match."""
    producer = RecordingProducer()
    await producer.update_task(task_id=TASK, user_id=7, description=None, issued_at=ISSUED)
    producer.assert_sent("update_task", task_id=str(TASK).upper(), issued_at="2026-11-25T09:30:00Z")
    producer.assert_sent("update_task", description=None, title=ABSENT, user_id=ANY)
    producer.assert_sent("update_task", user_id=lambda user: user > 5)
    producer.assert_not_sent("update_task", title=None)


async def test_a_failed_assert_sent_lists_the_decoded_commands_and_what_differs() -> None:
    """The failure names what was expected and shows each sent command decoded (its members, its
    signing key id), never the raw signed bytes, and which expected fields it differs in."""
    producer = RecordingProducer(signing_key=KEY)
    await producer.create_task(user_id=7, title="Write the report", task_id=TASK)
    with pytest.raises(AssertionError) as failed:
        producer.assert_sent("create_task", user_id=7, title="Write the summary")
    text = str(failed.value)
    assert "expected a create_task with user_id=7, title='Write the summary' to have been sent" in text
    assert f'create_task(command_id="{producer.jobs[0].job_id}"' in text
    assert 'title="Write the report"' in text
    assert "signed by 'billing-1'" in text
    assert "differs in title" in text
    assert '"sig"' not in text
    assert producer.jobs[0].raw.decode() not in text


async def test_assert_not_sent_fails_showing_the_commands_that_match() -> None:
    """assert_not_sent raises listing the matching commands; with none sent it passes."""
    producer = RecordingProducer()
    producer.assert_not_sent("complete_task")
    await producer.complete_task(task_id=TASK, user_id=3)
    with pytest.raises(AssertionError, match=r"expected no complete_task with user_id=3 .*1 was:\n  complete_task\("):
        producer.assert_not_sent("complete_task", user_id=3)


async def test_count_and_job_filters() -> None:
    """count= asks for exactly that many; signed_by and outcome_ttl filter by the job."""
    producer = RecordingProducer(signing_key=KEY)
    await producer.complete_task(task_id=TASK, user_id=3, outcome_ttl=30)
    await producer.complete_task(task_id=TASK, user_id=3)
    producer.assert_sent("complete_task", count=2, signed_by="billing-1")
    producer.assert_sent("complete_task", count=1, outcome_ttl=30)
    producer.assert_not_sent(signed_by=None)
    with pytest.raises(AssertionError, match="exactly 3 complete_task"):
        producer.assert_sent("complete_task", count=3)


def test_a_misspelt_field_or_function_is_an_error_not_a_silent_mismatch() -> None:
    """A field the function does not have, or an unknown function, raises at once, so that
    assert_not_sent cannot pass because of a typo."""
    producer = RecordingProducer()
    with pytest.raises(TypeError, match="'titel' is not a member of create_task"):
        producer.assert_not_sent("create_task", titel="x")
    with pytest.raises(ValueError, match="'create' is not a command function"):
        producer.assert_not_sent("create")


# -- signing ---------------------------------------------------------------------------------------


async def test_signed_jobs_verify_with_the_worker_and_show_their_key() -> None:
    """Jobs recorded by a signing producer verify in the worker's decoder under the same key, and each
    command shows the key id that signed it."""
    producer = RecordingProducer(signing_key=KEY)
    await producer.create_task(user_id=7, title="Signed")
    verifier = Verifier({KEY.key_id: KeyConfig(secret=KEY.secret.decode())}, required=True)
    decoded = Decoder(65536, 1 << 20, verifier)(producer.jobs[0].raw)
    assert (decoded["f"], decoded["a"][0].signed_by) == ("create_task", "billing-1")
    assert producer.assert_sent("create_task", title="Signed").signed_by == "billing-1"


def test_a_tampered_or_foreign_signature_is_refused() -> None:
    """A job whose bytes changed after signing, or signed with a key other than the producer's,
    is refused as the worker would refuse it (bad signature, unknown key)."""
    producer = RecordingProducer(signing_key=KEY)
    command = CreateTask(command_id=uuid4(), issued_at=ISSUED, task_id=TASK, user_id=7, title="Mine")
    signed = job_of_command(command, 1, None, KEY)
    with pytest.raises(WouldBeRefused, match="bad signature"):
        producer.memory.enqueue(producer.queue, [1, 1000, "a", signed.replace(b"Mine", b"Ours")])
    other = job_of_command(command, 1, None, SigningKey.of("other", "o" * 40))
    with pytest.raises(WouldBeRefused, match="unknown key"):
        producer.memory.enqueue(producer.queue, [1, 1000, "b", other])


def test_envelope_members_newer_than_this_code_pass_through_unjudged() -> None:
    """An envelope member or job option this code does not know (added by a newer producer) is kept
    in SentJob.envelope and does not make the job refused."""
    complete = next(case for case in CASES if case.name == "complete")
    raw = json.dumps(
        {"f": "complete_task", "a": [complete.command], "k": {"trace": "00-ab-cd-01"}, "t": None, "et": 1, "x": 2}
    ).encode()
    job = inspect_job(raw, job_id="j", queue="q", future_tolerance_s=None)
    assert (job.options["trace"], job.envelope["x"]) == ("00-ab-cd-01", 2)


# -- packaging -------------------------------------------------------------------------------------


def test_the_memory_redis_refuses_calls_it_does_not_stand_in_for() -> None:
    """A Redis call other than the producer's raises NotImplementedError saying what it stands in for."""
    with pytest.raises(NotImplementedError, match="stands in for the calls a TaskProducer makes"):
        MemoryRedis().hgetall("x")


async def test_connect_is_refused_and_close_is_harmless() -> None:
    """RecordingProducer.connect(url) says to construct it instead; `async with` and close() work as
    with the real producer."""
    with pytest.raises(TypeError, match=r"build it with RecordingProducer\(...\), no URL"):
        RecordingProducer.connect("redis://127.0.0.1:6379/0")
    async with RecordingProducer() as producer:
        await producer.complete_task(task_id=TASK, user_id=1)
    producer.assert_sent("complete_task", user_id=1)


def test_the_pytest_fixture_is_a_fresh_recording_producer(taskline_producer: RecordingProducer) -> None:
    """The plugin's `taskline_producer` fixture (entry point pytest11) is a RecordingProducer with
    nothing sent yet."""
    assert isinstance(taskline_producer, RecordingProducer)
    assert taskline_producer.jobs == []


def test_the_readme_example_passes_in_a_fresh_pytest_run_with_the_plugin_autoloaded(tmp_path: Any) -> None:
    """The README's example test of a service, run by a separate pytest in an empty directory, passes:
    the `taskline_producer` fixture comes from the installed plugin (entry point pytest11)."""
    readme = (Path(__file__).resolve().parents[2] / "producers" / "python" / "README.md").read_text()
    section = readme[readme.index("## Testing a service that sends commands") :]
    example = section[
        section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python"))
    ]
    (tmp_path / "test_example.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "test_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.taskline_producer(signing_key=KEY, queue="taskline:other")
async def test_the_fixture_takes_its_options_from_the_marker(taskline_producer: RecordingProducer) -> None:
    """The `taskline_producer` marker's keyword arguments reach the fixture's RecordingProducer: here
    it signs with the given key and sends on the given queue."""
    await taskline_producer.create_task(user_id=7, title="Signed")
    sent = taskline_producer.assert_sent("create_task", signed_by="billing-1")
    assert sent.job.queue == "taskline:other"
