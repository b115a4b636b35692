"""Redis Sentinel: a real worker process, the producer and the tools on a `redis+sentinel://` URL
follow a failover (tests/support/sentinel_group.py: one master, one replica, three sentinels).

The direct-send test counts what a failover loses: commands the old master acknowledged that the
replica had not received when the master was SIGKILLed (replication is asynchronous). It prints
the count; docs/outbox.md ("Redis failover") states the window.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskline_producer import CreateTask, TaskProducer, keys
from taskline_producer.connection import connect_redis

from tests.acceptance.test_worker_process import BIN, processed_count, started
from tests.conftest import procfile_command, wait_for, worker_env
from tests.support.sentinel_group import MASTER_NAME, SentinelGroup, binaries
from tests.support.workers import wait_for_heartbeats

pytestmark = pytest.mark.acceptance

SENDERS = 4
COMMANDS = 1200
KILL_AFTER = 400  # acknowledged sends before the master is killed


def _running_group(directory: Path) -> Iterator[SentinelGroup]:
    found = binaries()
    if found is None:
        pytest.skip("redis-server and redis-sentinel are not installed (apt-get install redis-sentinel)")
    directory.mkdir()
    group = SentinelGroup(directory, *found)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A group of this test's own, which it may break (kill its master)."""
    yield from _running_group(tmp_path / "sentinel")


@pytest.fixture(scope="module")
def shared_sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A group the tests that leave it intact share (each on its own queue)."""
    yield from _running_group(tmp_path_factory.mktemp("shared") / "sentinel")


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Any]:
    """Start the Procfile's `scheduler` process with the test's settings (heartbeat every second)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Any) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / "scheduler.log"
        with log.open("ab") as out:
            env = worker_env(settings, TASKLINE_HEARTBEAT_INTERVAL="1")
            started.append(
                subprocess.Popen(procfile_command("scheduler"), env=env, stdout=out, stderr=subprocess.STDOUT)
            )
        return started[-1], log

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def send_until_acknowledged(producer: TaskProducer, command: CreateTask, failures: list[str]) -> None:
    """What a producer should do when a send raises during a failover: send the same command again
    (the same command id: if the first try was queued after all, Redis refuses the copy)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            await producer.send(command)
            return
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            failures.append(type(exc).__name__)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)  # the producer's own backoff while the sentinels elect a master


async def queue_drained(client: Any, queue: str) -> bool:
    """Nothing left for the worker: no job queued or deferred, none claimed."""
    if await client.zcard(queue):
        return False
    async for _ in client.scan_iter(match=keys.in_progress_key("*"), count=1000):
        return False
    return True


async def forget_heartbeats(client: Any, queue: str) -> None:
    for worker_id in await client.zrange(keys.workers_index_key(queue), 0, -1):
        await client.delete(keys.heartbeat_key(queue, worker_id.decode()))


def _alive(log: Path, process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, log.read_text()


async def test_a_worker_follows_a_failover_and_the_direct_sends_lost_are_counted(
    settings: Any,
    db: Any,
    users: list[int],
    sentinel_group: SentinelGroup,
    start_worker: Any,
    start_scheduler: Any,
) -> None:
    """Mid-stream the master is SIGKILLed: the worker process stays up, reconnects through the
    sentinels to the promoted replica and keeps applying; its heartbeat and the scheduler's are
    written on the new master; the producer's retried sends reach the new
    master; every command acknowledged after the failover is applied once, and the commands the
    old master acknowledged but the replica never received are counted (and printed)."""
    url = sentinel_group.url
    settings = settings.model_copy(update={"redis_url": url})
    worker = start_worker(REDIS_URL=url, TASKLINE_JOB_TIMEOUT="2", TASKLINE_HEARTBEAT_INTERVAL="1")
    await started(worker)
    scheduler, scheduler_log = start_scheduler(settings)
    base = datetime.now(UTC)
    commands = [
        CreateTask(command_id=uuid4(), issued_at=base, task_id=uuid4(), user_id=1 + i % 20, title=f"failover {i}")
        for i in range(COMMANDS)
    ]
    acknowledged_before: list[UUID] = []  # acknowledged before the kill: by the old master
    in_flight: list[UUID] = []  # sent before the kill, acknowledged after: by either master
    acknowledged_after: list[UUID] = []  # sent after the kill: by the new master
    failures: list[str] = []
    killed = asyncio.Event()
    pending = iter(commands)
    producer = TaskProducer.connect(url, queue=settings.queue)

    async def sender() -> None:
        for command in pending:
            sent_before_kill = not killed.is_set()
            await send_until_acknowledged(producer, command, failures)
            if not killed.is_set():
                acknowledged_before.append(command.command_id)
            else:
                (in_flight if sent_before_kill else acknowledged_after).append(command.command_id)
            if len(acknowledged_before) >= KILL_AFTER and not killed.is_set():
                killed.set()
                sentinel_group.kill_master()

    old_master = ("127.0.0.1", sentinel_group.master_port)
    try:
        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        assert killed.is_set()
        assert failures, "no send failed: the master was not killed mid-stream"
        new_master = await asyncio.to_thread(sentinel_group.master_address)
        assert new_master == ("127.0.0.1", sentinel_group.replica_port), (new_master, sentinel_group.logs())
        assert new_master != old_master

        checker = connect_redis(url, socket_timeout=5)
        try:
            await wait_for(lambda: queue_drained(checker, settings.queue), timeout=90, interval=0.2)
            # Heartbeats follow the failover: the ones the replica received from the old master are
            # removed, and the worker and the scheduler write theirs again, on the new master.
            for queue, pid in (
                (settings.queue, worker.proc.pid),
                (keys.scheduler_queue(settings.queue), scheduler.pid),
            ):
                await forget_heartbeats(checker, queue)
                await wait_for_heartbeats(
                    checker, queue, [pid], timeout=30, check=lambda: _alive(scheduler_log, scheduler)
                )
        finally:
            await checker.aclose()
    finally:
        await producer.close()

    assert worker.proc.poll() is None, worker.log()
    assert scheduler.poll() is None, scheduler_log.read_text()[-3000:]
    log = worker.log()
    assert "lost the connection to Redis" in log, log[-3000:]
    assert "Redis is reachable again" in log, log[-3000:]
    # Sent after the failover: nothing lost, each applied once.
    assert await processed_count(db, acknowledged_after) == len(acknowledged_after)
    exposed = acknowledged_before + in_flight
    lost = len(exposed) - await processed_count(db, exposed)
    assert len(exposed) + len(acknowledged_after) == COMMANDS
    tasks = await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in commands])
    assert tasks == COMMANDS - lost  # nothing applied twice, nothing applied that was not sent
    print(
        f"\nsentinel failover: {lost} of {len(exposed)} direct sends acknowledged before or while the master"
        f" was killed were lost; {len(acknowledged_after)} sent after it all applied;"
        f" {len(failures)} send attempts failed during the failover"
    )


async def test_the_tools_and_the_producer_cli_use_a_sentinel_url(
    settings: Any, db: Any, users: list[int], shared_sentinel_group: SentinelGroup
) -> None:
    """`taskline-send` and `taskline status` accept a redis+sentinel:// REDIS_URL and reach the master."""
    settings = settings.model_copy(update={"redis_url": shared_sentinel_group.url})
    env = worker_env(settings)
    sent = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "taskline-send"), "create", "--user-id", "1", "--title", "through the sentinels"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    master = connect_redis(shared_sentinel_group.url)
    try:
        assert await master.zcard(settings.queue) == 1
    finally:
        await master.aclose()
    status = await asyncio.to_thread(
        subprocess.run, [str(BIN / "taskline"), "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["depth"]["ready"] == 1, status.stdout


NODE_SENTINEL = """
import { createSentinel } from "redis";
import { TaskProducer } from "./dist/index.js";
const ports = process.env.SENTINEL_PORTS.split(",").map(Number);
const sentinel = createSentinel({
  name: process.env.SENTINEL_MASTER,
  sentinelRootNodes: ports.map((port) => ({ host: "127.0.0.1", port })),
});
sentinel.on("error", (error) => console.error("redis:", error.message));
await sentinel.connect();
try {
  const producer = new TaskProducer(sentinel, { queue: process.env.TASKLINE_QUEUE });
  const receipt = await producer.createTask({ userId: 1, title: "from node through the sentinels" });
  const many = await producer.sendMany([]);
  console.log(JSON.stringify({ receipt, many: many.queued }));
} finally {
  await sentinel.close();
}
"""


async def test_the_typescript_producer_sends_through_a_node_redis_sentinel_client(
    settings: Any, shared_sentinel_group: SentinelGroup
) -> None:
    """`new TaskProducer(createSentinel({name, sentinelRootNodes}))` (node-redis 5/6) queues on the master."""
    from tests.node_producer import node_json

    env = {
        **worker_env(settings),
        "SENTINEL_PORTS": ",".join(str(port) for port in shared_sentinel_group.sentinel_ports),
        "SENTINEL_MASTER": MASTER_NAME,
    }
    out = await asyncio.to_thread(node_json, NODE_SENTINEL, env=env, timeout=120)
    assert out["receipt"]["queued"] is True, out
    master = connect_redis(shared_sentinel_group.url)
    try:
        assert await master.zscore(settings.queue, out["receipt"]["commandId"]) is not None
    finally:
        await master.aclose()


async def test_what_a_lagging_replica_had_not_received_is_lost_in_a_failover(
    settings: Any, sentinel_group: SentinelGroup
) -> None:
    """The window, made visible: with the replica's link down (dropped by the master, not yet
    resynchronised), the master still acknowledges sends; SIGKILLed then, the replica is promoted
    without them. Commands the replica had received are all on the new master."""
    import redis as redis_sync

    def command(i: int) -> CreateTask:
        return CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=1, title=f"l{i}")

    replicated = [command(i) for i in range(100)]
    unreplicated = [command(100 + i) for i in range(50)]
    master = redis_sync.Redis(port=sentinel_group.master_port)
    replica = redis_sync.Redis(port=sentinel_group.replica_port, decode_responses=True)
    producer = TaskProducer.connect(sentinel_group.url, queue=settings.queue)
    try:
        assert (await producer.send_many(replicated)).queued == len(replicated)
        assert master.execute_command("WAIT", 1, 5000) == 1  # the replica has every one of them
        # A dropped replication link that cannot be re-established: the master refuses PSYNC/SYNC
        # from now on (an ACL rule; the producer's commands are still allowed), then drops the link.
        master.execute_command("ACL", "SETUSER", "default", "-psync", "-sync")
        master.client_kill_filter(_type="slave")  # CLIENT KILL TYPE replica
        await wait_for(lambda: replica.info("replication")["master_link_status"] == "down", timeout=10)
        report = await producer.send_many(unreplicated)
        assert report.queued == len(unreplicated)  # acknowledged by the master
        sentinel_group.kill_master()
        promoted = ("127.0.0.1", sentinel_group.replica_port)

        async def promoted_yet() -> bool:
            return await asyncio.to_thread(sentinel_group.master_address) == promoted

        try:
            await wait_for(promoted_yet, timeout=60, interval=0.1)
        except AssertionError:
            pytest.fail(f"the sentinels did not promote the replica:\n{sentinel_group.logs()}")

        async def present(commands: list[CreateTask]) -> int:
            return sum([await producer.redis.exists(keys.job_key(str(c.command_id))) for c in commands])

        await wait_for(lambda: _sends_again(producer), timeout=30)

        async def all_replicated_present() -> bool:
            # A connection made while the sentinels were still agreeing may reach another node for a
            # moment (seen once under load: 0 of 100): look again until the promoted master answers.
            master_now = await asyncio.to_thread(sentinel_group.master_address)
            return master_now == promoted and await present(replicated) == len(replicated)

        try:
            await wait_for(all_replicated_present, timeout=30, interval=0.2)
        except AssertionError:
            pytest.fail(f"{await present(replicated)} of {len(replicated)} replicated commands are on the new master")
        lost = len(unreplicated) - await present(unreplicated)
        assert lost >= 1, "the replica had every acknowledged command: no window was made"
        print(f"\nlagging replica: {lost} of {len(unreplicated)} acknowledged sends lost in the failover")
    finally:
        await producer.close()
        master.close()
        replica.close()


async def _sends_again(producer: TaskProducer) -> bool:
    """The producer's client reaches a master again (after the promotion)."""
    try:
        return bool(await producer.redis.ping())
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return False


async def _confirmed(db: Any) -> int:
    return int(await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE confirmed_at IS NOT NULL"))


async def test_every_outbox_command_is_applied_once_across_a_failover_that_loses_writes(
    settings: Any, db: Any, users: list[int], sentinel_group: SentinelGroup, start_worker: Any, tmp_path: Path
) -> None:
    """The outbox's promise through a Sentinel failover, in the worst case: the replica's link is
    cut (it stops receiving writes), the relay publishes to the master commands the replica never
    gets, and while a service keeps committing to the outbox the master is SIGKILLed. The relay
    (on the redis+sentinel:// URL) follows the failover, finds what the promoted replica lacks, and
    publishes it again; a worker started afterwards applies every committed command exactly once."""
    import redis as redis_sync

    from tests.acceptance.test_outbox_relay import RelayProcess, _commit_in_batches
    from tests.support.outbox import creates_and_updates, reset_outbox

    url = sentinel_group.url
    settings = settings.model_copy(update={"redis_url": url})
    await reset_outbox(settings.database_url)
    commands = creates_and_updates(1200, seed=1200)
    before, unreplicated, during, after = (commands[i : i + 300] for i in range(0, 1200, 300))
    relay = RelayProcess(settings, tmp_path / "relay.log")
    master = redis_sync.Redis(port=sentinel_group.master_port)
    replica = redis_sync.Redis(port=sentinel_group.replica_port, decode_responses=True)
    try:
        # Published and replicated: on the new master after the failover, as they should be.
        await _commit_in_batches(db, before)
        await wait_for(lambda: _published(db, len(before)), timeout=30)
        assert master.execute_command("WAIT", 1, 5000) == 1
        # The replica's link cut for good (as in the lagging-replica test below): what the master
        # acknowledges from now on is lost in the failover.
        master.execute_command("ACL", "SETUSER", "default", "-psync", "-sync")
        master.client_kill_filter(_type="slave")
        await wait_for(lambda: replica.info("replication")["master_link_status"] == "down", timeout=10)
        await _commit_in_batches(db, unreplicated)
        await wait_for(lambda: _published(db, len(before) + len(unreplicated)), timeout=30)
        assert master.zcard(settings.queue) == len(before) + len(unreplicated)  # acknowledged by the master

        async def kill_mid_stream() -> None:
            watcher = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                target = len(before) + len(unreplicated) + 60
                await wait_for(lambda: _published(watcher, target), timeout=30, interval=0.01)
            finally:
                await watcher.close()
            sentinel_group.kill_master()

        # A service keeps committing (each batch its own transaction) while the master dies.
        await asyncio.gather(_commit_in_batches(db, during, batch=20), kill_mid_stream())
        await wait_for(lambda: _promoted(sentinel_group), timeout=60, interval=0.1)
        await _commit_in_batches(db, after)
        worker = start_worker(REDIS_URL=url, TASKLINE_JOB_TIMEOUT="2")
        await started(worker)
        try:
            await wait_for(lambda: _at_least(_confirmed(db), len(commands)), timeout=120, interval=0.2)
        except AssertionError:
            states = await db.fetch("SELECT publications, outcome, count(*) FROM taskline_outbox GROUP BY 1, 2")
            raise AssertionError(
                f"not every row confirmed: {[tuple(r) for r in states]}\n{relay.log()[-3000:]}"
            ) from None
        assert relay.proc.poll() is None, relay.log()[-3000:]
    finally:
        master.close()
        replica.close()
        relay.stop()
    ids = [c.command_id for c in commands]
    assert await processed_count(db, ids) == len(commands)
    assert (
        await db.fetchval("SELECT count(*) FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in commands]) == 600
    )
    titles = dict(
        await db.fetch("SELECT id, title FROM task WHERE id = ANY($1::uuid[])", [c.task_id for c in commands])
    )
    assert titles == {c.task_id: c.title for c in commands[1::2]}  # each task's update won, once
    republished = await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE publications > 1")
    assert republished >= len(unreplicated), republished  # the replica never had them: published again
    log = relay.log()
    assert log.count("(REDIS_URL); ") == 1, log[-3000:]
    assert "Redis is reachable again" in log, log[-3000:]
    print(
        f"\nsentinel failover through the outbox: {len(commands)} committed, {republished} published again"
        f" (the {len(unreplicated)} the replica never received among them), all applied exactly once"
    )


async def _published(db: Any, count: int) -> bool:
    return int(await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE published_at IS NOT NULL")) >= count


async def _at_least(value: Any, count: int) -> bool:
    return int(await value) >= count


async def _promoted(group: SentinelGroup) -> bool:
    return await asyncio.to_thread(group.master_address) == ("127.0.0.1", group.replica_port)
