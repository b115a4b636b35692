"""TaskProducer against an in-memory Redis (fakeredis with Lua): the exact keys and JSON it writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis
from taskline_producer import CompleteTask, CreateTask, TaskProducer, UpdateTask
from taskline_producer.contract import DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_QUEUE
from taskline_producer.wire import DEFAULT_JOB_TTL_MS

from worker.pipeline.decode import BulkDelivery, Decoder, Delivery

QUEUE = "taskline:unit"
ISSUED = datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC)
decode = Decoder(DEFAULT_MAX_PAYLOAD_BYTES, 1024 * 1024)


@pytest.fixture
async def fake_redis() -> AsyncIterator[FakeRedis]:
    """A Redis of this test's own (a private fakeredis server)."""
    client = FakeRedis(server=FakeServer())
    yield client
    await client.aclose()


@pytest.fixture
def producer(fake_redis: FakeRedis) -> TaskProducer:
    """A producer without fair turns: its jobs go into the queue itself, arq's layout."""
    return TaskProducer(fake_redis, queue=QUEUE, fair=False)


def create(n: int = 0, **overrides: Any) -> CreateTask:
    data: dict[str, Any] = {
        "command_id": uuid4(),
        "issued_at": ISSUED + timedelta(microseconds=n),
        "task_id": uuid4(),
        "user_id": 1 + n % 20,
        "title": f"Task {n}",
    }
    data.update(overrides)
    return CreateTask(**data)


async def stored_job(redis: FakeRedis, job_id: UUID | str) -> bytes:
    raw = await redis.get(f"arq:job:{job_id}")
    assert raw is not None, f"no arq:job:{job_id}"
    return raw


async def test_send_writes_the_arq_job_key_and_queues_the_job_id(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """send() stores arq:job:<command_id> = {"f","a","k","t","et"} JSON and ZADDs the id, scored by et."""
    command = create(description="Details")
    receipt = await producer.send(command)

    assert (receipt.command_id, receipt.task_id, receipt.queued) == (command.command_id, command.task_id, True)
    job = json.loads(await stored_job(fake_redis, command.command_id))
    assert list(job) == ["f", "a", "k", "t", "et"]
    assert job["f"] == "create_task"
    assert job["a"] == [
        {
            "command_id": str(command.command_id),
            "issued_at": "2026-11-25T09:30:00.123456Z",
            "task_id": str(command.task_id),
            "user_id": 1,
            "title": "Task 0",
            "description": "Details",
        }
    ]
    assert (job["k"], job["t"]) == ({}, None)
    assert isinstance(job["et"], int)
    assert await fake_redis.zrange(QUEUE, 0, -1, withscores=True) == [(str(command.command_id).encode(), job["et"])]


async def test_a_queued_job_expires_after_the_job_ttl(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """The job key carries the job TTL (one day by default), so an unrun job eventually expires."""
    command = create()
    await producer.send(command)
    ttl_ms = await fake_redis.pttl(f"arq:job:{command.command_id}")
    assert DEFAULT_JOB_TTL_MS - 60_000 < ttl_ms <= DEFAULT_JOB_TTL_MS


async def test_the_default_queue_is_the_contract_default(fake_redis: FakeRedis) -> None:
    """Without a queue argument the producer enqueues on DEFAULT_QUEUE ("taskline:queue")."""
    command = create()
    await TaskProducer(fake_redis, fair=False).send(command)
    assert await fake_redis.zscore(DEFAULT_QUEUE, str(command.command_id)) is not None


async def test_a_fair_producer_puts_each_job_in_its_users_lane(fake_redis: FakeRedis) -> None:
    """By default a job's id goes to the end of its user's lane as `<score> <cost> <id>`, the key
    joins the turns, and the job's own key is written as for any job; the queue is untouched."""
    producer = TaskProducer(fake_redis, queue=QUEUE, fair=True)
    first, second = create(0, user_id=9), create(1, user_id=9)
    await producer.send(first)
    await producer.send_many([second])

    lane = [entry.decode().split(" ") for entry in await fake_redis.lrange(f"{QUEUE}:fair:lane:user:9", 0, -1)]
    assert [(cost, job_id) for _, cost, job_id in lane] == [("1", str(first.command_id)), ("1", str(second.command_id))]
    et = json.loads(await stored_job(fake_redis, first.command_id))["et"]
    assert int(lane[0][0]) == et
    assert await fake_redis.zrange(f"{QUEUE}:fair:turns", 0, -1) == [b"user:9"]
    assert await fake_redis.zcard(QUEUE) == 0


async def test_a_bulk_job_costs_its_commands_and_goes_to_its_main_users_lane(fake_redis: FakeRedis) -> None:
    """A bulk of 3 commands (two of user 5, one of user 6) costs 3 turns of user 5; a named key wins."""
    producer = TaskProducer(fake_redis, queue=QUEUE, fair=True)
    receipt = await producer.send_bulk([create(0, user_id=5), create(1, user_id=6), create(2, user_id=5)])
    named = await producer.send_bulk([create(3, user_id=5)], fairness_key="tenant:acme")

    (entry,) = await fake_redis.lrange(f"{QUEUE}:fair:lane:user:5", 0, -1)
    assert entry.decode().split(" ")[1:] == ["3", receipt.job_id]
    (entry,) = await fake_redis.lrange(f"{QUEUE}:fair:lane:tenant:acme", 0, -1)
    assert entry.decode().split(" ")[1:] == ["1", named.job_id]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "caf\u00e9"])
async def test_a_fairness_key_that_cannot_be_one_is_refused_before_sending(fake_redis: FakeRedis, bad: str) -> None:
    """A fairness key is 1-128 printable ASCII characters without spaces; anything else raises
    ValueError saying so, and nothing is written."""
    producer = TaskProducer(fake_redis, queue=QUEUE, fair=True)
    with pytest.raises(ValueError, match="fairness key"):
        await producer.send(create(), fairness_key=bad)
    with pytest.raises(ValueError, match="fairness key"):
        await producer.send_many([create()], fairness_key=bad)
    assert await fake_redis.dbsize() == 0


async def test_resending_the_same_command_id_is_refused(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """A second send with the same command_id returns queued=False and leaves the first job untouched."""
    command_id = uuid4()
    first = await producer.send(create(command_id=command_id, title="First"))
    before = await stored_job(fake_redis, command_id)

    second = await producer.send(create(command_id=command_id, title="Second"))

    assert (first.queued, second.queued) == (True, False)
    assert await stored_job(fake_redis, command_id) == before
    assert await fake_redis.zcard(QUEUE) == 1


async def test_a_command_whose_result_is_still_kept_is_refused(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """While arq keeps a job's result (arq:result:<id>), the same command id is refused, as arq would."""
    command = create()
    await fake_redis.set(f"arq:result:{command.command_id}", b"{}")
    assert (await producer.send(command)).queued is False
    assert await fake_redis.exists(f"arq:job:{command.command_id}") == 0


async def test_send_many_queues_1200_commands_then_refuses_all_1200(
    producer: TaskProducer, fake_redis: FakeRedis
) -> None:
    """send_many of 1,200 new commands reports 1,200 queued; sending them again reports 1,200 duplicates."""
    commands = [create(n) for n in range(1200)]

    first = await producer.send_many(commands)
    assert (first.queued, first.duplicates) == (1200, [])
    assert await fake_redis.zcard(QUEUE) == 1200

    again = await producer.send_many(commands)
    assert again.queued == 0
    assert again.duplicates == [c.command_id for c in commands]
    assert await fake_redis.zcard(QUEUE) == 1200


async def test_send_many_refuses_a_repeat_within_the_same_call(producer: TaskProducer) -> None:
    """The same command id twice in one send_many call is queued once and reported once as a duplicate."""
    command = create()
    report = await producer.send_many([command, create(1), command])
    assert (report.queued, report.duplicates) == (2, [command.command_id])


async def test_send_many_jobs_are_the_same_as_send_jobs(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """Each command sent by send_many is its own job, identical in form to what send() writes."""
    one, many = create(1), create(2)
    await producer.send(one)
    await producer.send_many([many])
    job_one = json.loads(await stored_job(fake_redis, one.command_id))
    job_many = json.loads(await stored_job(fake_redis, many.command_id))
    assert job_one.keys() == job_many.keys()
    assert job_many["a"] == [many.model_dump(mode="json", exclude_unset=True)]


async def test_update_task_description_none_sends_null_and_leaves_title_absent(
    producer: TaskProducer, fake_redis: FakeRedis
) -> None:
    """update_task(description=None) sends "description": null and no "title" member at all."""
    receipt = await producer.update_task(task_id=uuid4(), user_id=4, description=None, issued_at=ISSUED)
    (argument,) = json.loads(await stored_job(fake_redis, receipt.command_id))["a"]
    assert "description" in argument
    assert argument["description"] is None
    assert "title" not in argument


async def test_update_task_title_only_sends_no_description(producer: TaskProducer, fake_redis: FakeRedis) -> None:
    """update_task(title=...) sends the title and no "description" member, so the description is kept."""
    receipt = await producer.update_task(task_id=uuid4(), user_id=4, title="Renamed")
    (argument,) = json.loads(await stored_job(fake_redis, receipt.command_id))["a"]
    assert argument["title"] == "Renamed"
    assert "description" not in argument


async def test_the_convenience_methods_generate_ids_and_validate(producer: TaskProducer) -> None:
    """create_task generates fresh ids when none are given, and refuses an invalid command before sending."""
    a = await producer.create_task(user_id=1, title="A")
    b = await producer.create_task(user_id=1, title="B")
    assert a.queued
    assert b.queued
    assert len({a.command_id, b.command_id, a.task_id, b.task_id}) == 4
    with pytest.raises(ValueError, match="title"):
        await producer.create_task(user_id=1, title="   ")


async def test_update_task_with_nothing_to_change_is_refused_before_sending(
    producer: TaskProducer, fake_redis: FakeRedis
) -> None:
    """update_task with neither title nor description raises and writes nothing."""
    with pytest.raises(ValueError, match="at least one of title or description"):
        await producer.update_task(task_id=uuid4(), user_id=1)
    assert await fake_redis.zcard(QUEUE) == 0


@pytest.mark.parametrize(
    "command",
    [
        create(7, description=None),
        create(8, description="  kept as sent  ", title=" spaced "),
        UpdateTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=2, description=None),
        UpdateTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=2, title="T", description=""),
        CompleteTask(
            command_id=uuid4(),
            issued_at=datetime(2026, 11, 25, 15, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            task_id=uuid4(),
            user_id=3,
        ),
    ],
    ids=["create", "create-spaces", "update-clear-description", "update-both", "complete-with-offset"],
)
async def test_a_sent_command_decodes_in_the_worker_to_the_same_command(
    producer: TaskProducer, fake_redis: FakeRedis, command: CreateTask | UpdateTask | CompleteTask
) -> None:
    """A job written by the producer decodes through the worker's Decoder to a Delivery of an equal command."""
    await producer.send(command)
    raw = await stored_job(fake_redis, command.command_id)

    result = decode(raw)

    assert result["f"] == command.function
    (delivery,) = result["a"]
    assert isinstance(delivery, Delivery)
    assert delivery.raw == raw
    assert delivery.command == command
    assert delivery.command.model_fields_set == command.model_fields_set


async def test_a_bulk_job_decodes_in_the_worker_to_the_same_commands(
    producer: TaskProducer, fake_redis: FakeRedis
) -> None:
    """send_bulk writes one apply_commands job whose items decode to the commands sent, in order."""
    commands = [
        create(1),
        UpdateTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=2, description=None),
        CompleteTask(command_id=uuid4(), issued_at=ISSUED, task_id=uuid4(), user_id=3),
    ]
    receipt = await producer.send_bulk(commands, job_id="bulk-1")
    assert (receipt.job_id, receipt.commands, receipt.queued) == ("bulk-1", 3, True)
    assert (await producer.send_bulk(commands, job_id="bulk-1")).queued is False

    result = decode(await stored_job(fake_redis, "bulk-1"))

    assert result["f"] == "apply_commands"
    (bulk,) = result["a"]
    assert isinstance(bulk, BulkDelivery)
    assert bulk.rejected == []
    assert bulk.commands == list(enumerate(commands))
    assert [c.model_fields_set for _, c in bulk.commands] == [c.model_fields_set for c in commands]


@pytest.mark.parametrize("count", [0, 1001])
async def test_send_bulk_refuses_an_empty_or_oversized_list(producer: TaskProducer, count: int) -> None:
    """send_bulk takes 1 to 1,000 commands."""
    with pytest.raises(ValueError, match="1 to 1000"):
        await producer.send_bulk([create(n) for n in range(count)])


@pytest.mark.parametrize(("value", "fair"), [("", False), ("0", False), ("false", False), ("1", True), ("TRUE", True)])
def test_taskline_fair_turns_decides_when_the_code_does_not(
    monkeypatch: pytest.MonkeyPatch, fake_redis: FakeRedis, value: str, fair: bool
) -> None:
    """TASKLINE_FAIR_TURNS turns fair turns on for producers made without `fair=` (off when unset:
    workers of earlier releases never read the lanes); `fair=` given wins."""
    monkeypatch.setenv("TASKLINE_FAIR_TURNS", value)
    assert TaskProducer(fake_redis).fair is fair
    assert TaskProducer(fake_redis, fair=not fair).fair is (not fair)


def test_a_taskline_fair_turns_that_means_nothing_is_refused_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, fake_redis: FakeRedis
) -> None:
    """A value that is neither on nor off raises, naming the variable and the fix."""
    monkeypatch.setenv("TASKLINE_FAIR_TURNS", "maybe")
    with pytest.raises(ValueError, match="TASKLINE_FAIR_TURNS must be 1 or 0"):
        TaskProducer(fake_redis)
