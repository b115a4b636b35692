"""Crashes: SIGKILLed workers, dropped Redis connections and terminated PostgreSQL backends.

Every test streams commands while something breaks, then checks the result against an oracle:
each valid command is recorded exactly once in processed_command, and each task ends as if its
valid commands had been applied once each in issued_at order.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import redis as redis_sync
from redis.asyncio import Redis
from taskline_producer import TaskProducer
from taskline_producer.contract import Command, CompleteTask, CreateTask, UpdateTask, dumps
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, envelope, epoch_ms, wire_argument

from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

TEST_CLIENT_NAME = "taskline-acceptance"
"""Redis connections of the test itself, spared when the test drops the worker's connections."""


# -- the plan and its oracle --------------------------------------------------------------------


def make_plan(rng: random.Random, tasks: int, updates: tuple[int, int] = (0, 6), users: int = 20) -> list[Command]:
    """Valid commands for `tasks` new tasks, in issued_at order: a create, `updates` (min, max)
    updates and 0–2 completions each, with increasing issued_at."""
    base = datetime.now(UTC) - timedelta(hours=1)
    commands: list[Command] = []
    for n in range(tasks):
        task_id, user_id = uuid4(), rng.randint(1, users)
        at = base + timedelta(seconds=n)
        commands.append(
            CreateTask(
                command_id=uuid4(),
                issued_at=at,
                task_id=task_id,
                user_id=user_id,
                title=f"task {n}",
                description=rng.choice([None, f"created {n}"]),
            )
        )
        steps = ["update"] * rng.randint(*updates) + ["complete"] * rng.choice([0, 0, 1, 1, 2])
        rng.shuffle(steps)
        for k, step in enumerate(steps, start=1):
            at_k = at + timedelta(milliseconds=k)
            if step == "complete":
                commands.append(CompleteTask(command_id=uuid4(), issued_at=at_k, task_id=task_id, user_id=user_id))
                continue
            changes: dict[str, Any] = {}
            shape = rng.choice(["title", "description", "both", "clear"])
            if shape in ("title", "both"):
                changes["title"] = f"task {n} v{k}"
            if shape in ("description", "both"):
                changes["description"] = f"task {n} d{k}"
            if shape == "clear":
                changes["description"] = None
            commands.append(UpdateTask(command_id=uuid4(), issued_at=at_k, task_id=task_id, user_id=user_id, **changes))
    return commands


def oracle(commands: list[Command]) -> dict[UUID, tuple[Any, ...]]:
    """Each task's (user_id, title, description, completed, completed_at) after applying its
    commands once each in issued_at order: last writer wins per field, earliest completion."""
    state: dict[UUID, dict[str, Any]] = {}
    for command in sorted(commands, key=lambda c: (c.issued_at, c.command_id)):
        if isinstance(command, CreateTask):
            state[command.task_id] = {
                "user_id": command.user_id,
                "title": command.title,
                "description": command.description,
                "completed_at": None,
            }
            continue
        task = state[command.task_id]
        if isinstance(command, CompleteTask):
            if task["completed_at"] is None or command.issued_at < task["completed_at"]:
                task["completed_at"] = command.issued_at
        else:
            if command.sets_title:
                task["title"] = command.title
            if command.sets_description:
                task["description"] = command.description
    return {
        task_id: (t["user_id"], t["title"], t["description"], t["completed_at"] is not None, t["completed_at"])
        for task_id, t in state.items()
    }


def job_of(command: Command) -> bytes:
    return envelope(command.function, command.model_dump(mode="json", exclude_unset=True), epoch_ms())


# -- helpers ------------------------------------------------------------------------------------


async def started(worker: Any) -> None:
    await wait_for(lambda: worker.proc.poll() is not None or "worker started" in worker.log(), timeout=30)
    assert worker.proc.poll() is None, worker.log()


async def processed_count(db: Any, command_ids: list[UUID]) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", command_ids)
    )


async def actual_state(db: Any, task_ids: list[UUID]) -> dict[UUID, tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT id, user_id, title, description, completed, completed_at FROM task WHERE id = ANY($1::uuid[])",
        task_ids,
    )
    return {
        row["id"]: (row["user_id"], row["title"], row["description"], row["completed"], row["completed_at"])
        for row in rows
    }


async def assert_applied_exactly_once(db: Any, commands: list[Command], queue: str) -> None:
    ids = [c.command_id for c in commands]
    assert len(set(ids)) == len(ids)
    assert await processed_count(db, ids) == len(ids)
    expected = oracle(commands)
    actual = await actual_state(db, list(expected))
    wrong = {task_id: (actual.get(task_id), want) for task_id, want in expected.items() if actual.get(task_id) != want}
    assert not wrong, f"{len(wrong)} tasks differ from the oracle, e.g. {next(iter(wrong.items()))}"
    letters = await db.fetch(
        "SELECT job_id, reason FROM dead_letter WHERE queue = $1 AND job_id = ANY($2::text[])",
        queue,
        [str(i) for i in ids],
    )
    assert not letters, f"valid commands were dead-lettered: {[dict(r) for r in letters[:5]]}"


async def send_in_chunks(
    producer: TaskProducer,
    commands: list[Command],
    chunk: int,
    pause: float,
    between: Callable[[int], Any] | None = None,
) -> None:
    """Send `commands` `chunk` at a time, `pause` seconds apart, calling `between(i)` after chunk i."""
    for i, start in enumerate(range(0, len(commands), chunk)):
        report = await producer.send_many(commands[start : start + chunk])
        assert not report.duplicates
        if between is not None:
            result = between(i)
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(pause)


async def queue_report(redis: Redis, queue: str, job_ids: list[str]) -> str:
    """Where the given jobs are in Redis: queued and ready, deferred, claimed (in progress), gone."""
    now = epoch_ms()
    ready = await redis.zrangebyscore(queue, "-inf", now)
    claimed_ready = sum([await redis.exists(f"arq:in-progress:{job_id.decode()}") for job_id in ready[:500]])
    total = await redis.zcard(queue)
    lines = [f"queue: {total} jobs, {len(ready)} ready, of the first 500 ready {claimed_ready} claimed"]
    for job_id in job_ids[:8]:
        score = await redis.zscore(queue, job_id)
        lines.append(
            f"  {job_id}: job key {bool(await redis.exists(f'arq:job:{job_id}'))}, "
            f"score {None if score is None else int(score) - now} ms from now, "
            f"in-progress ttl {await redis.pttl(f'arq:in-progress:{job_id}')} ms, "
            f"tries {await redis.get(f'arq:retry:{job_id}')}"
        )
    return "\n".join(lines)


def worker_problems(workers: list[Any]) -> str:
    """Lines of the workers' logs worth a look: errors, tracebacks, arq giving up."""
    lines = []
    for worker in workers:
        for line in worker.log().splitlines():
            if any(word in line for word in ('"level": "error"', "Traceback", "gave up", "exceeded")):
                lines.append(line[:300])
    return "\n".join(lines[:20])


# -- the tests ----------------------------------------------------------------------------------


async def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(settings, redis, db, users, start_worker):
    """A worker SIGKILLed mid-stream leaves every command applied exactly once after a new one starts."""
    # arq re-runs a job claimed by a dead worker once its in-progress key expires:
    # job timeout (TASKLINE_JOB_TIMEOUT, default 10 s) + 5 s margin + arq's 10 s, so ~25 s here.
    rng = random.Random(20261125)
    commands = make_plan(rng, tasks=100)
    assert 400 <= len(commands) <= 600, len(commands)
    ids = [c.command_id for c in commands]
    worker = start_worker()
    await started(worker)
    producer = TaskProducer(redis, queue=settings.queue)

    sender = asyncio.create_task(send_in_chunks(producer, commands, chunk=25, pause=0.03))
    await wait_for(lambda: _at_least(processed_count(db, ids), 100), timeout=30, interval=0.005)
    worker.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert worker.proc.wait(5) == -signal.SIGKILL
    at_kill = await processed_count(db, ids)
    await sender
    assert at_kill < len(ids), "everything was applied before the kill: nothing was tested"

    replacement = start_worker()
    await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=40, interval=0.2)
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < 40
    await assert_applied_exactly_once(db, commands, settings.queue)
    # Jobs the dead worker had committed but not yet cleared in Redis run again once their claims
    # expire (25 s after the kill at most), as duplicates: the queue empties, nothing changes.
    await wait_for(lambda: _queue_empty(redis, settings.queue), timeout=40, interval=0.2)
    await assert_applied_exactly_once(db, commands, settings.queue)
    assert replacement.proc.poll() is None, replacement.log()


async def test_chaos_three_workers_killed_at_random_apply_everything_once(settings, redis, db, users, start_worker):
    """Three workers SIGKILLed at random for 8 s, with TASKLINE_JOB_TIMEOUT=2 (a dead worker's claims expire after 2 + 5 + 10 = 17 s, not ~25 s), apply ~2,700 jobs exactly once."""  # noqa: E501
    env = {"TASKLINE_JOB_TIMEOUT": "2"}
    seed = int(os.environ.get("TASKLINE_CHAOS_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    valid = make_plan(rng, tasks=300, updates=(2, 9))
    # Each job gets a position in the stream: a task's commands follow one another from a random
    # start, interleaved with other tasks'; for a fifth of the tasks the create comes last, after
    # its updates and completions.
    jobs: list[tuple[float, str, bytes]] = []
    by_task: dict[UUID, list[Command]] = {}
    for command in valid:
        by_task.setdefault(command.task_id, []).append(command)
    for task_commands in by_task.values():
        position = rng.random()
        if rng.random() < 0.2:
            task_commands = [*task_commands[1:], task_commands[0]]
        for command in task_commands:
            position += rng.uniform(0, 0.02)
            jobs.append((position, str(command.command_id), job_of(command)))
    # ~10 % duplicates: the same command again, in a separate job (a one-item apply_commands job:
    # a command job must have its command_id as job id, so a second one would be refused at enqueue)
    duplicated: set[str] = set()
    for command in rng.sample(valid, len(valid) // 10):
        duplicated.add(str(command.command_id))
        item = {"function": command.function, "command": wire_argument(command)}
        jobs.append((rng.random(), f"dup-{uuid4()}", envelope("apply_commands", [item], epoch_ms())))
    # ~2 % invalid: broken contract, an unknown function, not JSON, or another user's task
    invalid: dict[str, str] = {}
    creates = [c for c in valid if isinstance(c, CreateTask)]
    for n in range(len(jobs) // 50):
        kind = ("bad-title", "unknown-function", "not-json", "forbidden")[n % 4]
        target = rng.choice(creates)
        if kind == "forbidden":
            intruder = UpdateTask(
                command_id=uuid4(),
                issued_at=target.issued_at + timedelta(seconds=0.5),
                task_id=target.task_id,
                user_id=target.user_id % 20 + 1,
                title="intruder",
            )
            job_id, payload = str(intruder.command_id), job_of(intruder)
        else:
            job_id = f"invalid-{kind}-{uuid4()}"
            payload = {
                "bad-title": envelope(
                    "create_task",
                    {**target.model_dump(mode="json"), "command_id": str(uuid4()), "title": "x" * 201},
                    epoch_ms(),
                ),
                "unknown-function": dumps({"f": "drop_tables", "a": [], "k": {}, "t": None, "et": epoch_ms()}),
                "not-json": b"\x00\x01 not json at all",
            }[kind]
        invalid[job_id] = kind
        jobs.append((rng.random(), job_id, payload))
    jobs.sort(key=lambda job: job[0])
    assert 2000 <= len(jobs) <= 3200, len(jobs)

    workers = [start_worker(**env) for _ in range(3)]
    for worker in workers:
        await started(worker)

    async def send() -> None:
        chunk = len(jobs) // 16 + 1
        for start in range(0, len(jobs), chunk):
            args: list[Any] = [epoch_ms(), DEFAULT_JOB_TTL_MS]
            for _, job_id, payload in jobs[start : start + chunk]:
                args += [job_id, payload]
            queued = await redis.eval(ENQUEUE_SCRIPT, 1, settings.queue, *args)
            # Only a command whose duplicate went first can be refused: a worker that ran the
            # duplicate's apply_commands job before the task existed re-queued the command as its
            # own job (job id = command_id), and that copy is still in Redis.
            refused = {job_id for (_, job_id, _), ok in zip(jobs[start : start + chunk], queued, strict=True) if not ok}
            assert refused <= duplicated, refused - duplicated
            await asyncio.sleep(0.5)

    sender = asyncio.create_task(send())
    kills = 0
    chaos_until = time.monotonic() + 8
    while time.monotonic() < chaos_until:
        await asyncio.sleep(rng.uniform(0.6, 1.2))  # chaos pacing, not a wait for a condition
        index = rng.randrange(len(workers))
        workers[index].signal(signal.SIGKILL)
        workers[index].proc.wait(5)
        kills += 1
        workers[index] = start_worker(**env)
    await sender
    assert kills >= 6

    valid_ids = [c.command_id for c in valid]

    async def finished() -> bool:
        if await processed_count(db, valid_ids) < len(valid_ids):
            return False
        letters = await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = ANY($1::text[])", list(invalid))
        return letters == len(invalid)

    try:
        await wait_for(finished, timeout=45, interval=0.25)
    except AssertionError:
        done = await processed_count(db, valid_ids)
        applied = {
            row[0]
            for row in await db.fetch(
                "SELECT command_id FROM processed_command WHERE command_id = ANY($1::uuid[])", valid_ids
            )
        }
        missing = [c for c in valid if c.command_id not in applied]
        creates_missing = [str(c.command_id) for c in missing if isinstance(c, CreateTask)]
        report = await queue_report(redis, settings.queue, creates_missing or [str(c.command_id) for c in missing])
        missing_letters = await db.fetch(
            "SELECT job_id, function, reason, category, attempts FROM dead_letter WHERE job_id = ANY($1::text[])",
            [str(c.command_id) for c in missing],
        )
        missing_kinds = [f"{c.function} {c.command_id}" for c in missing]
        raise AssertionError(
            f"seed {seed}: {done}/{len(valid_ids)} applied, {len(creates_missing)} creates missing\n{report}\n"
            f"missing: {missing_kinds}\ntheir dead letters: {[dict(row) for row in missing_letters]}\n"
            f"{worker_problems(workers)}"
        ) from None
    await assert_applied_exactly_once(db, valid, settings.queue)

    letters = await db.fetch("SELECT job_id, reason, category FROM dead_letter WHERE queue = $1", settings.queue)
    by_id = {row["job_id"]: row for row in letters}
    assert set(by_id) == set(invalid), f"seed {seed}: unexpected dead letters {set(by_id) - set(invalid)}"
    expected_reason = {
        "bad-title": "title",
        "unknown-function": "'drop_tables' is not a taskline command",
        "not-json": "Invalid JSON",
        "forbidden": "forbidden",
    }
    for job_id, kind in invalid.items():
        assert expected_reason[kind] in by_id[job_id]["reason"], (kind, by_id[job_id]["reason"])
        assert by_id[job_id]["category"] == "permanent"
    forbidden = [UUID(job_id) for job_id, kind in invalid.items() if kind == "forbidden"]
    assert await processed_count(db, forbidden) == 0
    assert all(worker.proc.poll() is None for worker in workers)


async def test_dropped_redis_connections_do_not_stop_the_worker(settings, db, users, start_worker):
    """Killing the worker's Redis connections while commands flow: it reconnects and applies all once."""
    # The brief's `CLIENT KILL TYPE normal SKIPME yes` would also cut other test runs sharing this
    # Redis server, so only the clients on this run's database number are killed, sparing the
    # test's own connections (named TEST_CLIENT_NAME). TASKLINE_JOB_TIMEOUT=2: a job abandoned
    # by a reconnect is run again after 17 s rather than 25 s.
    worker = start_worker(TASKLINE_JOB_TIMEOUT="2")
    await started(worker)
    commands = make_plan(random.Random(7), tasks=120)
    admin = redis_sync.Redis.from_url(settings.redis_url, client_name=TEST_CLIENT_NAME)
    redis_db = int(settings.redis_url.rsplit("/", 1)[1])
    producer_client = Redis.from_url(settings.redis_url, client_name=TEST_CLIENT_NAME)
    killed: list[int] = []

    def drop_connections(chunk: int) -> None:
        if chunk % 6 != 5:
            return
        me = admin.client_id()
        count = 0
        for client in admin.client_list(_type="normal"):
            if int(client["db"]) == redis_db and int(client["id"]) != me and client.get("name") != TEST_CLIENT_NAME:
                count += int(admin.execute_command("CLIENT", "KILL", "ID", client["id"]))
        killed.append(count)

    try:
        producer = TaskProducer(producer_client, queue=settings.queue)
        await send_in_chunks(producer, commands, chunk=25, pause=0.1, between=drop_connections)
        assert len(killed) >= 3, killed
        assert sum(killed) > 0, killed
        ids = [c.command_id for c in commands]
        await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=40, interval=0.2)
        assert worker.proc.poll() is None, worker.log()
        await assert_applied_exactly_once(db, commands, settings.queue)
    finally:
        await producer_client.aclose()
        admin.close()


async def test_terminated_database_backends_do_not_stop_the_worker(settings, redis, db, users, start_worker):
    """pg_terminate_backend on the worker's connections mid-run: it retries and applies all exactly once."""
    worker = start_worker()
    await started(worker)
    commands = make_plan(random.Random(11), tasks=120)
    terminated: list[int] = []

    async def terminate(chunk: int) -> None:
        if chunk % 5 == 4:
            rows = await db.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'taskline-worker' AND datname = current_database()"
            )
            terminated.append(sum(1 for row in rows if row[0]))

    producer = TaskProducer(redis, queue=settings.queue)
    await send_in_chunks(producer, commands, chunk=25, pause=0.1, between=terminate)
    assert len(terminated) >= 3, terminated
    assert sum(terminated) > 0, terminated
    ids = [c.command_id for c in commands]
    await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=40, interval=0.2)
    assert worker.proc.poll() is None, worker.log()
    await assert_applied_exactly_once(db, commands, settings.queue)
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", settings.queue) == 0


async def _queue_empty(redis: Redis, queue: str) -> bool:
    return int(await redis.zcard(queue)) == 0


async def _at_least(value: Any, minimum: int) -> bool:
    return (await value) >= minimum


@pytest.fixture
def private_redis(tmp_path: Any) -> Any:
    """A redis-server of this test's own (append-only file on), which the test may stop and restart."""
    import shutil
    import socket
    import subprocess

    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
    ]
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = redis_sync.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis_sync.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop() -> None:
        processes[-1].terminate()
        processes[-1].wait(10)

    start()
    yield {"url": f"redis://127.0.0.1:{port}/0", "start": start, "stop": stop}
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_restarted_redis_server_does_not_stop_the_worker(settings, db, users, private_redis, start_worker):
    """Redis stops and comes back while commands flow: the worker process stays up, reconnects with
    backoff, and every command is applied exactly once."""
    settings = settings.model_copy(update={"redis_url": private_redis["url"]})
    commands = make_plan(random.Random(13), tasks=60)
    half = len(commands) // 2
    client = Redis.from_url(private_redis["url"])
    worker = start_worker(REDIS_URL=private_redis["url"], TASKLINE_JOB_TIMEOUT="2")
    try:
        await started(worker)
        await TaskProducer(client, queue=settings.queue).send_many(commands[:half])
        ids = [c.command_id for c in commands]
        await wait_for(lambda: _at_least(processed_count(db, ids), 1), timeout=20, interval=0.01)
        private_redis["stop"]()
        await asyncio.sleep(1.0)  # Redis stays away for a second while the worker keeps trying
        assert worker.proc.poll() is None, worker.log()
        private_redis["start"]()
        await client.aclose()
        client = Redis.from_url(private_redis["url"])
        await TaskProducer(client, queue=settings.queue).send_many(commands[half:])
        await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=40, interval=0.2)
        assert worker.proc.poll() is None, worker.log()
        log = worker.log()
        # One WARNING for the outage (naming REDIS_URL), one INFO when it is back; no countdown.
        assert log.count("lost the connection to Redis") == 1, log
        assert '"REDIS_URL"' in log or "(REDIS_URL)" in log, log
        assert log.count("Redis is reachable again") == 1, log
        assert "retries remaining" not in log
        await assert_applied_exactly_once(db, commands, settings.queue)
    finally:
        await client.aclose()


def _postgres_bindir() -> Path | None:
    import shutil
    import subprocess

    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
async def private_postgres() -> Any:
    """A PostgreSQL server of this test's own (initdb in a temporary directory, trust auth, a free
    port, fsync off), which the test may restart; migrated, with users 1–20."""
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    # PostgreSQL refuses to run as root: run it as the postgres system user then.
    prefix: list[str] = []
    account = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run a PostgreSQL server as")
    datadir = Path(tempfile.mkdtemp(prefix="taskline-pg-"))
    if account is not None:
        os.chown(datadir, account.pw_uid, account.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*argv: str) -> None:
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=60)

    await asyncio.to_thread(
        run, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
    )
    options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(datadir), "-w", "-t", "30"]

    def start() -> None:
        run(*pg_ctl, "-o", options, "-l", str(datadir / "server.log"), "start")

    def restart() -> None:
        run(*pg_ctl, "-m", "fast", "-o", options, "-l", str(datadir / "server.log"), "restart")

    await asyncio.to_thread(start)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        from worker.store.migrate import upgrade

        await asyncio.to_thread(upgrade, url)
        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                'INSERT INTO "user" (id, email, hashed_password) VALUES ($1, $2, $3)',
                [(i, f"user{i}@example.com", "!") for i in range(1, 21)],
            )
        finally:
            await conn.close()
        yield {"url": url, "restart": restart}
    finally:
        stop = [*prefix, *pg_ctl, "-m", "immediate", "stop"]
        await asyncio.to_thread(subprocess.run, stop, capture_output=True, timeout=60, check=False)
        shutil.rmtree(datadir, ignore_errors=True)


async def test_a_restarted_postgresql_server_does_not_stop_the_worker(settings, redis, private_postgres, start_worker):
    """PostgreSQL restarts (pg_ctl restart -m fast: every connection is cut, transactions in
    flight roll back) while commands flow: the worker process stays up, its commands are retried
    and every one is applied exactly once, with no dead letter."""
    url = private_postgres["url"]
    commands = make_plan(random.Random(17), tasks=120)
    ids = [c.command_id for c in commands]
    worker = start_worker(DATABASE_URL=url)
    await started(worker)
    began = datetime.now(UTC)
    restarts = 0

    async def restart(chunk: int) -> None:
        nonlocal restarts
        if chunk in (6, 14):
            await asyncio.to_thread(private_postgres["restart"])
            restarts += 1

    producer = TaskProducer(redis, queue=settings.queue)
    await send_in_chunks(producer, commands, chunk=25, pause=0.05, between=restart)
    assert restarts == 2
    db = await asyncpg.connect(url)
    try:
        await wait_for(lambda: _at_least(processed_count(db, ids), len(ids)), timeout=60, interval=0.2)
        assert worker.proc.poll() is None, worker.log()
        await assert_applied_exactly_once(db, commands, settings.queue)
        assert await db.fetchval("SELECT count(*) FROM dead_letter") == 0
        assert await db.fetchval("SELECT pg_postmaster_start_time()") > began  # it really restarted
        # The worker felt it, and said so once per outage: a WARNING naming DATABASE_URL when
        # commands failed on cut or refused connections, an INFO when the database answered again.
        lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        down = [line for line in lines if line["level"] == "warning" and "PostgreSQL" in line["event"]]
        back = [line for line in lines if "PostgreSQL is reachable again" in line["event"]]
        assert 1 <= len(down) <= restarts, down
        assert len(back) == len(down), back
        assert all("DATABASE_URL" in line["event"] for line in down)
    finally:
        await db.close()
