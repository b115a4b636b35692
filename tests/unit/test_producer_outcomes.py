"""The producer's side of contract versions and outcomes, against fakeredis.

Imports nothing but taskline_producer, fakeredis and pytest: tests/acceptance/
test_producer_distribution.py runs this module in a fresh venv with the newest redis-py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from taskline_producer import CONTRACT_VERSION, CreateTask, Outcome, OutcomeTimeout, TaskProducer, keys
from taskline_producer.cli import expand_bare_wait
from taskline_producer.outcomes import read_outcome
from taskline_producer.wire import job_options

QUEUE = "taskline:unit"


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def fake_redis(server: FakeServer) -> AsyncIterator[FakeRedis]:
    client = FakeRedis(server=server)
    yield client
    await client.aclose()


@pytest.fixture
async def worker_redis(server: FakeServer) -> AsyncIterator[FakeRedis]:
    """A second connection to the same server, standing in for the worker."""
    client = FakeRedis(server=server)
    yield client
    await client.aclose()


@pytest.fixture
def producer(fake_redis: FakeRedis) -> TaskProducer:
    return TaskProducer(fake_redis, queue=QUEUE)


def create(n: int = 0) -> CreateTask:
    return CreateTask(
        command_id=uuid4(),
        issued_at=datetime(2026, 11, 25, 9, 30, tzinfo=UTC) + timedelta(microseconds=n),
        task_id=uuid4(),
        user_id=1,
        title=f"Task {n}",
    )


async def worker_writes(
    redis: FakeRedis, command_id: UUID, state: str, *, reason: str | None = None, ttl: int = 600
) -> None:
    """What the worker writes (docs/contract.md, "Outcomes"): the outcome JSON and, when final, a done token."""
    document = {
        "command_id": str(command_id),
        "job_id": str(command_id),
        "state": state,
        "reason": reason,
        "at": datetime.now(UTC).isoformat(),
        "next_try_at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat() if state == "retrying" else None,
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.outcome_key(str(command_id)), json.dumps(document), ex=ttl)
        if state in ("applied", "duplicate", "dead_letter"):
            pipe.rpush(keys.outcome_done_key(str(command_id)), state)
            pipe.expire(keys.outcome_done_key(str(command_id)), ttl)
        await pipe.execute()


async def stored_k(redis: FakeRedis, job_id: UUID | str) -> dict[str, Any]:
    raw = await redis.get(keys.job_key(str(job_id)))
    assert raw is not None
    return dict(json.loads(raw)["k"])


def test_the_newest_contract_version_is_4() -> None:
    """Version 2 adds outcome_ttl, version 3 the signature, version 4 the trace context; this
    package writes and understands up to it."""
    assert CONTRACT_VERSION == 4


def test_outcome_keys_are_under_taskline_outcome() -> None:
    """The outcome and its done list: the names docs/contract.md fixes (the TypeScript client mirrors them)."""
    assert keys.outcome_key("c1") == "taskline:outcome:c1"
    assert keys.outcome_done_key("c1") == "taskline:outcome:c1:done"


async def test_a_job_without_outcomes_carries_no_contract_member(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """The lowest version that carries what the job uses: no outcome asked, k stays {} (version 1)."""
    receipt = await producer.send(create())
    assert await stored_k(fake_redis, receipt.command_id) == {}
    assert receipt.outcome_ttl is None


async def test_outcome_ttl_makes_the_job_contract_version_2(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """send/create_task/send_many/send_bulk with outcome_ttl write k = {"contract": 2, "outcome_ttl": n}."""
    receipt = await producer.create_task(user_id=1, title="t", outcome_ttl=600)
    assert await stored_k(fake_redis, receipt.command_id) == {"contract": 2, "outcome_ttl": 600}
    many = [create(n) for n in range(3)]
    await producer.send_many(many, outcome_ttl=60)
    assert [await stored_k(fake_redis, c.command_id) for c in many] == [{"contract": 2, "outcome_ttl": 60}] * 3
    bulk = await producer.send_bulk([create(5), create(6)], outcome_ttl=7)
    assert await stored_k(fake_redis, bulk.job_id) == {"contract": 2, "outcome_ttl": 7}


@pytest.mark.parametrize("ttl", [0, -1, 604_801, True, 1.5, "60"])
def test_outcome_ttl_outside_one_second_to_one_week_is_refused_before_sending(ttl: Any) -> None:
    """outcome_ttl is whole seconds from 1 to 604800; anything else is a ValueError naming the range."""
    with pytest.raises(ValueError, match="from 1 to 604800"):
        job_options(ttl)


async def test_status_is_queued_then_running_then_the_workers_outcome(
    producer: TaskProducer, fake_redis: FakeRedis
) -> None:
    """Without an outcome key: queued (job key, no claim), running (claimed); then what the worker wrote."""
    receipt = await producer.send(create(), outcome_ttl=600)
    assert (await receipt.status()).state == "queued"
    await fake_redis.set(keys.in_progress_key(receipt.job_id), b"1")
    assert (await receipt.status()).state == "running"
    await worker_writes(fake_redis, receipt.command_id, "retrying", reason="the task does not exist yet")
    status = await receipt.status()
    assert (status.state, status.reason, status.final) == ("retrying", "the task does not exist yet", False)
    assert status.next_try_at is not None
    assert status.next_try_at.tzinfo is not None


async def test_status_is_unknown_when_nothing_is_known(producer: TaskProducer) -> None:
    """No outcome and no job: never sent with outcomes, or its outcome expired."""
    status = await producer.status(uuid4())
    assert status.state == "unknown"


async def test_outcome_returns_a_final_outcome_already_there(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """A command that is already applied: outcome() returns at once."""
    receipt = await producer.send(create(), outcome_ttl=600)
    await worker_writes(fake_redis, receipt.command_id, "applied")
    outcome = await receipt.outcome(timeout=5)
    assert (outcome.state, outcome.final, outcome.command_id, outcome.job_id) == (
        "applied",
        True,
        receipt.command_id,
        receipt.job_id,
    )


async def test_outcome_wakes_every_waiter_when_the_final_state_is_written(
    producer: TaskProducer, worker_redis: FakeRedis, server: FakeServer
) -> None:
    """Two waiters block on the done list; one final write wakes both (BLMOVE onto itself keeps the token)."""
    receipt = await producer.send(create(), outcome_ttl=600)
    other = FakeRedis(server=server)
    try:
        waiters = [
            asyncio.create_task(receipt.outcome(timeout=10)),
            asyncio.create_task(TaskProducer(other, queue=QUEUE).outcome(receipt.command_id, timeout=10)),
        ]
        await asyncio.sleep(0.05)  # let both block first: the point is waking blocked waiters
        assert not any(w.done() for w in waiters)
        await worker_writes(worker_redis, receipt.command_id, "dead_letter", reason="conflict: ...")
        outcomes = await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    finally:
        await other.aclose()
    assert [(o.state, o.reason) for o in outcomes] == [("dead_letter", "conflict: ...")] * 2
    assert await worker_redis.llen(keys.outcome_done_key(str(receipt.command_id))) == 1


async def test_outcome_times_out_with_the_last_state_seen(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """No final outcome in time: OutcomeTimeout carries the last state (here: retrying, with its reason)."""
    receipt = await producer.send(create(), outcome_ttl=600)
    await worker_writes(fake_redis, receipt.command_id, "retrying", reason="database unreachable")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(OutcomeTimeout) as caught:
        await receipt.outcome(timeout=0.3)
    assert 0.25 <= loop.time() - started < 3
    assert (caught.value.outcome.state, caught.value.outcome.reason) == ("retrying", "database unreachable")
    assert "last seen: retrying" in str(caught.value)


async def test_outcome_of_a_command_sent_without_outcome_ttl_says_how_to_ask(producer: TaskProducer) -> None:
    """Waiting for what was never going to be recorded is a mistake the receipt explains."""
    receipt = await producer.send(create())
    with pytest.raises(ValueError, match="pass outcome_ttl"):
        await receipt.outcome(timeout=1)


async def test_bulk_outcomes_are_keyed_by_each_command_id(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """An apply_commands job's receipt waits for each of its commands' outcomes."""
    commands = [create(n) for n in range(3)]
    receipt = await producer.send_bulk(commands, outcome_ttl=600)
    assert (await producer.status(commands[0].command_id, job_id=receipt.job_id)).state == "queued"
    await worker_writes(fake_redis, commands[0].command_id, "applied")
    await worker_writes(fake_redis, commands[1].command_id, "duplicate")
    with pytest.raises(OutcomeTimeout) as caught:
        await receipt.outcomes(timeout=0.2)
    assert caught.value.outcome.command_id == commands[2].command_id
    await worker_writes(fake_redis, commands[2].command_id, "dead_letter", reason="forbidden")
    outcomes = await receipt.outcomes(timeout=5)
    assert {c: o.state for c, o in outcomes.items()} == {
        commands[0].command_id: "applied",
        commands[1].command_id: "duplicate",
        commands[2].command_id: "dead_letter",
    }


async def test_read_outcome_parses_the_workers_document(fake_redis: FakeRedis) -> None:
    """Every member of the outcome JSON is read, timestamps as aware datetimes."""
    command_id = uuid4()
    await worker_writes(fake_redis, command_id, "applied")
    outcome = await read_outcome(fake_redis, command_id, str(command_id))
    assert isinstance(outcome, Outcome)
    assert outcome.at is not None
    assert outcome.at.tzinfo is not None
    assert outcome.as_dict()["state"] == "applied"


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["create", "--wait"], ["create", "--wait", "30"]),
        (["create", "--wait", "--title", "x"], ["create", "--wait", "30", "--title", "x"]),
        (["create", "--wait", "5"], ["create", "--wait", "5"]),
        (["create", "--title", "x"], ["create", "--title", "x"]),
    ],
)
def test_a_bare_wait_waits_the_default_time(args: list[str], expanded: list[str]) -> None:
    """`taskline-send … --wait` with no number waits 30 s; `--wait 5` waits 5 s."""
    assert expand_bare_wait(args) == expanded
