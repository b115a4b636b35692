"""Contract versions and outcomes on the worker's side: the envelope's `k`, the setting, the
outcome writer (read back by the producer's reader, so both sides agree on the keys and JSON)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from taskline_producer import keys
from taskline_producer.contract import CONTRACT_VERSION
from taskline_producer.outcomes import read_outcome

from worker.config.settings import SettingsError, load_settings
from worker.pipeline.decode import REJECT_JOB, BulkDelivery, Decoder, Delivery, Rejected
from worker.pipeline.job_options import NO_OPTIONS, JobOptions
from worker.pipeline.outcomes import WRITE_SCRIPT, OutcomeReport, OutcomeWriter

decode = Decoder(max_payload_bytes=4096, max_bulk_payload_bytes=256 * 1024)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TOO_NEW = "contract version 5 is newer than this worker accepts (1..4): upgrade the workers, then replay"


def command(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "command_id": str(uuid4()),
        "issued_at": "2026-11-25T09:30:00Z",
        "task_id": str(uuid4()),
        "user_id": 3,
        "title": "t",
    }
    data.update(overrides)
    return data


def job(function: str, argument: Any, k: Any) -> bytes:
    return json.dumps({"f": function, "a": [argument], "k": k, "t": None, "et": 0}).encode()


def reason_of(raw: bytes) -> str:
    result = decode(raw)
    assert result["f"] == REJECT_JOB, result
    (rejected,) = result["a"]
    assert isinstance(rejected, Rejected)
    return rejected.reason


def test_an_empty_k_is_contract_version_1_with_no_options_allocated() -> None:
    """k = {} (every job of the previous release) decodes to the shared NO_OPTIONS."""
    (delivery,) = decode(job("create_task", command(), {}))["a"]
    assert isinstance(delivery, Delivery)
    assert delivery.options is NO_OPTIONS
    assert (delivery.options.contract, delivery.options.outcome_ttl) == (1, None)


@pytest.mark.parametrize(
    ("k", "options"),
    [
        ({"contract": 1}, JobOptions(1, None)),
        ({"contract": 2}, JobOptions(2, None)),
        ({"contract": 2, "outcome_ttl": 600}, JobOptions(2, 600)),
        ({"outcome_ttl": 604_800, "contract": 2}, JobOptions(2, 604_800)),
        ({"contract": 4, "traceparent": TRACEPARENT}, JobOptions(4, None, TRACEPARENT)),
        ({"contract": 4, "traceparent": TRACEPARENT, "tracestate": "a=1"}, JobOptions(4, None, TRACEPARENT, "a=1")),
        ({"contract": 4, "outcome_ttl": 9, "traceparent": "not one"}, JobOptions(4, 9, "not one")),
    ],
)
def test_known_options_decode_onto_the_delivery(k: dict[str, Any], options: JobOptions) -> None:
    """contract and outcome_ttl are carried to the job function on the Delivery; arq's k stays {}."""
    result = decode(job("create_task", command(), k))
    assert result["k"] == {}
    (delivery,) = result["a"]
    assert delivery.options == options


@pytest.mark.parametrize(
    ("k", "reason"),
    [
        ({"contract": 5}, TOO_NEW),
        ({"contract": 5, "priority": 1}, TOO_NEW),
        ({"contract": 0}, 'k: "contract" must be a whole number from 1'),
        ({"contract": "2"}, 'k: "contract" must be a whole number from 1'),
        ({"contract": True}, 'k: "contract" must be a whole number from 1'),
        ({"user_id": 1}, "k: 'user_id' is not a taskline job option; contract version 1 knows contract, outcome_ttl"),
        ({"contract": 2, "priority": 1}, "k: 'priority' is not a taskline job option; contract version 2 knows"),
        ({"outcome_ttl": 600}, 'k: "outcome_ttl" is new in contract version 2: the job must carry "contract": 2'),
        ({"contract": 1, "outcome_ttl": 600}, 'k: "outcome_ttl" is new in contract version 2'),
        ({"contract": 2, "outcome_ttl": 0}, 'k: "outcome_ttl" must be a whole number of seconds from 1 to 604800'),
        ({"contract": 2, "outcome_ttl": 604_801}, 'k: "outcome_ttl" must be a whole number of seconds'),
        ({"contract": 2, "outcome_ttl": 1.5}, 'k: "outcome_ttl" must be a whole number of seconds'),
        ({"contract": 2, "outcome_ttl": None}, 'k: "outcome_ttl" must be a whole number of seconds'),
        (
            {"contract": 3, "traceparent": TRACEPARENT},
            'k: "traceparent" and "tracestate" are new in contract version 4',
        ),
        ({"traceparent": TRACEPARENT}, 'k: "traceparent" and "tracestate" are new in contract version 4'),
        ({"contract": 4, "traceparent": 7}, 'k: "traceparent" must be a string of 1 to 256 characters'),
        ({"contract": 4, "traceparent": "0" * 257}, 'k: "traceparent" must be a string of 1 to 256 characters'),
        ({"contract": 4, "tracestate": "a=1"}, 'k: "traceparent" must be a string'),
        ({"contract": 4, "traceparent": TRACEPARENT, "tracestate": 1}, 'k: "tracestate" must be a string of at'),
    ],
)
def test_options_that_break_the_contract_are_dead_lettered_with_the_reason(k: dict[str, Any], reason: str) -> None:
    """Unknown members, bad values, and a version newer than the code: a dead letter saying which."""
    assert reason_of(job("create_task", command(), k)).startswith(reason)


def test_a_newer_version_wins_over_what_this_code_cannot_read() -> None:
    """A version-5 job may use a new command or new fields: the reason is the version, not the parse."""
    assert reason_of(job("delete_task", {"task_id": str(uuid4())}, {"contract": 5})).startswith(TOO_NEW)
    assert reason_of(job("create_task", command(colour="red"), {"contract": 5})).startswith(TOO_NEW)
    bulk = [{"function": "create_task", "command": command(colour="red")}]
    assert reason_of(job("apply_commands", bulk, {"contract": 5})).startswith(TOO_NEW)
    assert "taskline dead-letters replay" in reason_of(job("create_task", command(), {"contract": 5}))


def test_the_version_is_checked_against_what_this_code_knows() -> None:
    """The code knows versions up to taskline_producer's CONTRACT_VERSION (a held-back worker is the job's business)."""
    (delivery,) = decode(job("create_task", command(), {"contract": CONTRACT_VERSION}))["a"]
    assert isinstance(delivery, Delivery)
    assert reason_of(job("create_task", command(), {"contract": CONTRACT_VERSION + 1})).startswith(
        f"contract version {CONTRACT_VERSION + 1} is newer"
    )


def test_a_bulk_job_carries_its_options_to_every_command_and_to_replayable_items() -> None:
    """An apply_commands job's options reach the BulkDelivery, and a rejected item's single-job
    payload (what a replay enqueues) keeps them, so its outcome is still recorded."""
    k = {"contract": 2, "outcome_ttl": 60}
    good, bad = command(), command(title="")
    items = [{"function": "create_task", "command": good}, {"function": "create_task", "command": bad}]
    (bulk,) = decode(job("apply_commands", items, k))["a"]
    assert isinstance(bulk, BulkDelivery)
    assert bulk.options == JobOptions(2, 60)
    (_, rejected) = bulk.rejected[0]
    assert json.loads(rejected.raw)["k"] == k


def rejected_of(raw: bytes) -> Rejected:
    result = decode(raw)
    assert result["f"] == REJECT_JOB, result
    (rejected,) = result["a"]
    assert isinstance(rejected, Rejected)
    return rejected


def test_an_invalid_command_that_asked_for_outcomes_gets_its_dead_letter_as_outcome() -> None:
    """A producer that does not validate (plain Redis, any language) learns why its command was
    refused: the Rejected carries the command id and outcome_ttl for the dead letter's outcome."""
    invalid = command(title="")
    rejected = rejected_of(job("create_task", invalid, {"contract": 2, "outcome_ttl": 60}))
    assert (rejected.command_id, rejected.outcome_ttl) == (invalid["command_id"], 60)
    assert "title" in rejected.reason


@pytest.mark.parametrize(
    ("argument", "k"),
    [
        (command(title=""), {}),  # did not ask
        (command(title=""), {"contract": 2, "outcome_ttl": 0}),  # asked, but k itself is invalid
        (command(title="", command_id="not-a-uuid"), {"contract": 2, "outcome_ttl": 60}),
        ("not a command", {"contract": 2, "outcome_ttl": 60}),
    ],
)
def test_a_refused_job_records_no_outcome_unless_it_validly_asked(argument: Any, k: dict[str, Any]) -> None:
    """No valid outcome_ttl or no UUID command_id: nothing to record an outcome under, or for how long."""
    rejected = rejected_of(job("create_task", argument, k))
    assert rejected.outcome_ttl is None


def test_job_options_round_trip_through_as_k() -> None:
    """A requeued bulk item gets the k its bulk job had; a version-1 job's k stays empty."""
    assert NO_OPTIONS.as_k() == {}
    assert JobOptions(2, 30).as_k() == {"contract": 2, "outcome_ttl": 30}
    assert JobOptions(2, None).as_k() == {"contract": 2}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("TASKLINE_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    return monkeypatch


def test_workers_accept_the_newest_version_by_default(environment: pytest.MonkeyPatch) -> None:
    """TASKLINE_CONTRACT_VERSION defaults to the newest version the code knows."""
    assert load_settings().contract_version == CONTRACT_VERSION
    environment.setenv("TASKLINE_CONTRACT_VERSION", "1")
    assert load_settings().contract_version == 1


@pytest.mark.parametrize("value", ["0", str(CONTRACT_VERSION + 1)])
def test_a_contract_version_the_code_does_not_know_stops_the_worker(
    environment: pytest.MonkeyPatch, value: str
) -> None:
    """TASKLINE_CONTRACT_VERSION outside 1..newest is a startup error naming the variable."""
    environment.setenv("TASKLINE_CONTRACT_VERSION", value)
    with pytest.raises(SettingsError, match="TASKLINE_CONTRACT_VERSION"):
        load_settings()


class _Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


@pytest.fixture
async def fake_redis() -> AsyncIterator[FakeRedis]:
    client = FakeRedis(server=FakeServer())
    yield client
    await client.aclose()


async def test_the_workers_outcomes_are_what_the_producer_reads(fake_redis: FakeRedis) -> None:
    """OutcomeReport writes each outcome with the job's TTL; a final one also pushes a done token."""
    applied, dead = str(uuid4()), str(uuid4())
    report = OutcomeReport(600, "job-1")
    report.add(applied, "applied")
    report.add(dead, "dead_letter", "conflict: another command already created this task id")
    await OutcomeWriter(fake_redis, _Log()).write(report)
    assert report.pending == []
    outcome = await read_outcome(fake_redis, UUID(applied), "job-1")
    assert (outcome.state, outcome.job_id, outcome.final) == ("applied", "job-1", True)
    outcome = await read_outcome(fake_redis, UUID(dead), "job-1")
    assert outcome.reason == "conflict: another command already created this task id"
    for command_id in (applied, dead):
        assert 590 <= await fake_redis.ttl(keys.outcome_key(command_id)) <= 600
        assert 590 <= await fake_redis.ttl(keys.outcome_done_key(command_id)) <= 600
        assert await fake_redis.llen(keys.outcome_done_key(command_id)) == 1


async def test_outcomes_of_jobs_ending_together_share_one_round_trip(fake_redis: FakeRedis) -> None:
    """Many jobs that end in the same moment (one group commit) write their outcomes in one command."""
    writer = OutcomeWriter(fake_redis, _Log())
    reports = [OutcomeReport(60, f"job-{n}", (str(uuid4()),)) for n in range(20)]
    for report in reports:
        report.add_job("applied")
    await fake_redis.script_load(WRITE_SCRIPT)  # as after the first batch: no NOSCRIPT round trip
    executed: list[int] = []
    real_evalsha = fake_redis.evalsha

    def counting_evalsha(*args: Any, **kwargs: Any) -> Any:
        executed.append(1)
        return real_evalsha(*args, **kwargs)

    fake_redis.evalsha = counting_evalsha  # type: ignore[method-assign]
    await asyncio.gather(*(writer.write(report) for report in reports))
    assert len(executed) == 1
    for report in reports:
        assert (await read_outcome(fake_redis, UUID(report.command_ids[0]), report.job_id)).state == "applied"


async def test_a_state_that_is_not_final_clears_the_done_list(fake_redis: FakeRedis) -> None:
    """A replayed dead letter goes back to retrying: its old done token must not wake waiters early."""
    command_id = str(uuid4())
    report = OutcomeReport(600, "job-1", (command_id,))
    report.add_job("dead_letter", "too new")
    await OutcomeWriter(fake_redis, _Log()).write(report)
    report.add_job("retrying", "the task does not exist yet", retry_in_s=2.0)
    await OutcomeWriter(fake_redis, _Log()).write(report)
    assert await fake_redis.exists(keys.outcome_done_key(command_id)) == 0
    document = json.loads(await fake_redis.get(keys.outcome_key(command_id)))
    assert (document["state"], document["reason"]) == ("retrying", "the task does not exist yet")
    assert document["next_try_at"] > document["at"]


async def test_an_outcome_redis_cannot_take_is_logged_never_raised() -> None:
    """The command's fate is decided before its outcome is written: a Redis error does not fail the job."""
    broken_server = FakeServer()
    broken_server.connected = False  # fakeredis: the server refuses connections
    client = FakeRedis(server=broken_server)
    log = _Log()
    report = OutcomeReport(600, "job-1", (str(uuid4()),))
    report.add_job("applied")
    await OutcomeWriter(client, log).write(report)
    assert log.warnings
    assert log.warnings[0][0] == "could not record outcomes"
    await client.aclose()


async def test_the_heartbeat_reports_the_newest_contract_version_the_worker_applies(fake_redis: FakeRedis) -> None:
    """A worker's heartbeat document carries its TASKLINE_CONTRACT_VERSION, so `taskline health --all`
    shows which workers still hold the fleet at an older version."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from worker.observe.health import Health
    from worker.observe.metrics import Metrics
    from worker.observe.monitor import Monitor

    engine = create_async_engine("postgresql+asyncpg://u@127.0.0.1/db")  # never connected
    try:
        monitor = Monitor(
            queue="q",
            health=Health(interval=5),
            metrics=Metrics(),
            redis=fake_redis,
            engine=engine,
            log=_Log(),
            contract_version=1,
        )
        assert monitor.document()["contract_version"] == 1
    finally:
        await engine.dispose()


def test_a_bulk_items_single_job_keeps_the_trace_context_of_its_bulk_job() -> None:
    """A rejected item of a traced bulk job is kept (for a replay) with the bulk job's trace
    context, so its dead letter, replayed, stays in its producer's trace."""
    k = {"contract": 4, "traceparent": TRACEPARENT, "tracestate": "a=1"}
    items = [
        {"function": "create_task", "command": command()},
        {"function": "create_task", "command": command(title="")},
    ]
    (bulk,) = decode(job("apply_commands", items, k))["a"]
    assert isinstance(bulk, BulkDelivery)
    assert bulk.options.as_k() == k
    (_, rejected) = bulk.rejected[0]
    assert json.loads(rejected.raw)["k"] == k
