"""The purge on real PostgreSQL: boundaries, open tasks, dry runs, batching, the index it walks,
a purge racing live workers, and the scheduler running each tick once across several processes.

Rows seeded here are stamped around a fixed `NOW` in the year 2000, so the purges (given that
`now`) never reach rows other tests wrote at the real current time; an autouse fixture removes
what a test leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from taskline_producer import TaskProducer
from taskline_producer.contract import CompleteTask, CreateTask
from taskline_producer.keys import scheduler_queue, workers_index_key

from tests.conftest import run_burst, taskline, wait_for
from worker.arq_seam.scheduler import PURGE_JOB, build_scheduler
from worker.config.settings import Settings
from worker.observe.metrics import Metrics
from worker.purge.plan import DEAD_LETTERS, PROCESSED_COMMANDS, TASKS, PurgePlan, PurgeSummary, Target
from worker.purge.purger import make_purge_engine, purge
from worker.tools.fleet import live_workers

pytestmark = pytest.mark.integration

NOW = datetime(2000, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2000, 1, 1, tzinfo=UTC)  # everything this module seeds is older than OLD + 1 year
SECOND = timedelta(seconds=1)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_purge_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def forget_seeded_rows(db: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await db.execute("DELETE FROM task WHERE completed_at < '2001-01-01' OR created_at < '2001-01-01'")
    await db.execute("DELETE FROM processed_command WHERE processed_at < '2001-01-01'")
    await db.execute("DELETE FROM dead_letter WHERE failed_at < '2001-01-01'")


async def seed_task(db: asyncpg.Connection, completed_at: datetime | None, *, completed: bool | None = None) -> UUID:
    """A task row as the worker writes it; open when `completed_at` is None."""
    task_id = uuid4()
    await db.execute(
        """INSERT INTO task (id, user_id, title, completed, completed_at, created_at, updated_at,
                             title_issued_at, title_command_id, description_issued_at, description_command_id)
           VALUES ($1, 1, 'seeded', $2, $3, $4, $4, $4, gen_random_uuid(), $4, gen_random_uuid())""",
        task_id,
        completed_at is not None if completed is None else completed,
        completed_at,
        OLD - timedelta(days=30),
    )
    return task_id


async def seed_many_completed(db: asyncpg.Connection, count: int, completed_at: datetime) -> None:
    await db.execute(
        """INSERT INTO task (id, user_id, title, completed, completed_at, created_at, updated_at,
                             title_issued_at, title_command_id, description_issued_at, description_command_id)
           SELECT gen_random_uuid(), 1 + g % 20, 'seeded ' || g, true, $2::timestamptz + g * interval '1 ms', $2, $2,
                  $2, gen_random_uuid(), $2, gen_random_uuid()
           FROM generate_series(1, $1::int) AS g""",
        count,
        completed_at,
    )


async def seed_processed(db: asyncpg.Connection, processed_at: datetime) -> UUID:
    command_id = uuid4()
    await db.execute(
        "INSERT INTO processed_command (command_id, function, task_id, issued_at, processed_at)"
        " VALUES ($1, 'create_task', $2, $3, $3)",
        command_id,
        uuid4(),
        processed_at,
    )
    return command_id


async def seed_dead_letter(db: asyncpg.Connection, failed_at: datetime) -> str:
    job_id = f"purge-test-{uuid4()}"
    await db.execute(
        "INSERT INTO dead_letter (job_id, function, payload, payload_size, reason, category, attempts, queue,"
        " failed_at) VALUES ($1, 'create_task', $2, 2, 'test', 'permanent', 1, 'q', $3)",
        job_id,
        b"{}",
        failed_at,
    )
    return job_id


async def task_ids(db: asyncpg.Connection, ids: list[UUID]) -> set[UUID]:
    return {row["id"] for row in await db.fetch("SELECT id FROM task WHERE id = ANY($1::uuid[])", ids)}


async def seed_boundaries(db: asyncpg.Connection, settings: Settings) -> dict[str, Any]:
    """Rows just outside (1 s older than) and just inside (1 s younger than, and exactly at) each retention."""
    task_cut = NOW - timedelta(seconds=settings.purge_retention)
    processed_cut = NOW - timedelta(seconds=settings.processed_retention)
    dead_cut = NOW - timedelta(seconds=settings.dead_letter_retention)
    return {
        "task_out": await seed_task(db, task_cut - SECOND),
        "task_in": [await seed_task(db, task_cut + SECOND), await seed_task(db, task_cut)],
        "open": [
            await seed_task(db, None),
            # defensive: a row flagged open keeps living whatever its completed_at says
            await seed_task(db, task_cut - timedelta(days=365), completed=False),
        ],
        "processed_out": await seed_processed(db, processed_cut - SECOND),
        "processed_in": [await seed_processed(db, processed_cut + SECOND), await seed_processed(db, processed_cut)],
        "dead_out": await seed_dead_letter(db, dead_cut - SECOND),
        "dead_in": [await seed_dead_letter(db, dead_cut + SECOND), await seed_dead_letter(db, dead_cut)],
    }


async def test_each_table_loses_exactly_the_rows_past_its_retention(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """completed_at = now − retention − 1 s goes; now − retention + 1 s and exactly now − retention stay;
    open tasks stay whatever their age; processed commands and dead letters follow their own retention."""
    rows = await seed_boundaries(db, settings)
    metrics = Metrics()

    summary = await purge(engine, PurgePlan.from_settings(settings), now=NOW, metrics=metrics)

    assert summary.rows == {"task": 1, "processed_command": 1, "dead_letter": 1}
    assert summary.complete
    assert not summary.dry_run
    assert await task_ids(db, [rows["task_out"]]) == set()
    assert await task_ids(db, rows["task_in"] + rows["open"]) == set(rows["task_in"] + rows["open"])
    processed = {
        r[0] for r in await db.fetch("SELECT command_id FROM processed_command WHERE processed_at < '2001-01-01'")
    }
    assert processed == set(rows["processed_in"])
    dead = {r[0] for r in await db.fetch("SELECT job_id FROM dead_letter WHERE failed_at < '2001-01-01'")}
    assert dead == set(rows["dead_in"])
    for table in ("task", "processed_command", "dead_letter"):
        assert metrics.registry.get_sample_value("taskline_purge_rows_deleted_total", {"table": table}) == 1
    assert metrics.registry.get_sample_value("taskline_purge_duration_seconds_count") == 1


async def test_a_dry_run_counts_what_would_go_and_deletes_nothing(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    rows = await seed_boundaries(db, settings)
    before = await db.fetchval("SELECT count(*) FROM task")

    summary = await purge(engine, PurgePlan.from_settings(settings), now=NOW, dry_run=True)

    assert summary.dry_run
    assert summary.rows == {"task": 1, "processed_command": 1, "dead_letter": 1}
    assert await db.fetchval("SELECT count(*) FROM task") == before
    assert await task_ids(db, [rows["task_out"]]) == {rows["task_out"]}
    assert await db.fetchval("SELECT count(*) FROM processed_command WHERE command_id = $1", rows["processed_out"]) == 1
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE job_id = $1", rows["dead_out"]) == 1


async def test_a_shorter_retention_for_tasks_only_leaves_the_bookkeeping_to_its_own(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """`taskline purge --older-than 0s` deletes every completed task, but never a processed command
    inside the redelivery horizon."""
    rows = await seed_boundaries(db, settings)
    plan = PurgePlan.from_settings(settings, task_retention=timedelta(0))

    summary = await purge(engine, plan, now=NOW)

    assert summary.rows["task"] == 3
    assert await task_ids(db, rows["task_in"] + rows["open"]) == set(rows["open"])
    assert summary.rows["processed_command"] == 1


async def test_batches_are_bounded_and_a_backlog_drains(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """10 rows, batches of 3: 3 + 3 + 3 + 1, each its own transaction."""
    await seed_many_completed(db, 10, OLD)
    plan = PurgePlan.from_settings(settings, batch=3, processed_retention=None, dead_letter_retention=None)
    seen: list[tuple[str, int]] = []

    summary = await purge(engine, plan, now=NOW, progress=lambda table, n: seen.append((table, n)))

    assert (summary.rows, summary.batches, summary.complete) == ({"task": 10}, 4, True)
    assert seen == [("task", 3), ("task", 3), ("task", 3), ("task", 1)]


async def test_the_run_stops_inside_its_time_budget_and_the_next_one_carries_on(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """A clock that moves 1 s per reading: a 5 s budget allows a few batches, not all of them."""
    await seed_many_completed(db, 50, OLD)
    plan = PurgePlan.from_settings(
        settings, batch=2, time_budget=5.0, pause_ratio=0, processed_retention=None, dead_letter_retention=None
    )
    ticks = iter(range(10_000))

    first = await purge(engine, plan, now=NOW, clock=lambda: float(next(ticks)))

    assert not first.complete
    assert 0 < first.rows["task"] < 50
    assert 1 <= first.batches <= 5  # every batch costs at least one (fake) second of the budget
    rest = await purge(engine, PurgePlan.from_settings(settings, time_budget=None), now=NOW)
    assert first.rows["task"] + rest.rows["task"] == 50
    assert rest.complete


class ScriptedClock:
    """A clock under which batch i takes `batch_seconds[i]`. Without a time budget the purge reads the
    clock once at the start, before and after each batch, and once at the end."""

    def __init__(self, batch_seconds: list[float]) -> None:
        self.readings = [0.0]
        now = 0.0
        for seconds in batch_seconds:
            self.readings += [now, now + seconds]
            now += seconds
        self.readings.append(now)
        self.read = 0

    def __call__(self) -> float:
        reading = self.readings[min(self.read, len(self.readings) - 1)]
        self.read += 1
        return reading


async def backoff_pauses(
    engine: AsyncEngine, settings: Settings, rows: int, batch_seconds: list[float], **changes: Any
) -> list[float]:
    """Seed `rows` rows, purge them 3 a batch under a scripted clock; the sleeps between batches."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO task (id, user_id, title, completed, completed_at, created_at, updated_at, title_issued_at,"
            " title_command_id, description_issued_at, description_command_id)"
            " SELECT gen_random_uuid(), 1, 'seeded', true, $1::timestamptz + g * interval '1 ms', $1, $1, $1,"
            " gen_random_uuid(), $1, gen_random_uuid() FROM generate_series(1, $2::int) AS g",
            (OLD, rows),
        )
    plan = PurgePlan.from_settings(
        settings, batch=3, time_budget=None, processed_retention=None, dead_letter_retention=None, **changes
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    await purge(engine, plan, now=NOW, clock=ScriptedClock(batch_seconds), sleep=sleep)
    return slept


async def test_on_a_quiet_database_the_purge_never_pauses(
    settings: Settings, users: list[int], engine: AsyncEngine
) -> None:
    """Nobody else commits and the batches keep their pace: no pause at all between batches (the pace's
    arithmetic is pinned in tests/unit/test_purge_pace.py; here, that the purge applies it)."""
    assert PurgePlan.from_settings(settings).pause_ratio == 0.0
    slept = await backoff_pauses(engine, settings, 9, [0.1, 0.1, 0.1, 0.1])
    assert slept == []


async def test_the_purge_pauses_in_proportion_to_each_batch(
    settings: Settings, users: list[int], engine: AsyncEngine
) -> None:
    """Batches at a steady pace: each is followed by a pause of `pause_ratio` × its duration."""
    slept = await backoff_pauses(engine, settings, 9, [0.1, 0.1, 0.1, 0.1], pause_ratio=0.5)
    assert slept == pytest.approx([0.05, 0.05, 0.05])


async def test_a_purge_slowed_down_for_a_while_backs_off_harder_and_recovers(
    settings: Settings, users: list[int], engine: AsyncEngine
) -> None:
    """Batches four times slower than the run's best, one after another (the workers are busy): each pause
    is longer than the last and longer than the batch; back at full pace the pauses shrink again."""
    slept = await backoff_pauses(
        engine, settings, 27, [0.1, 0.1, 0.4, 0.4, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1], pause_ratio=1.0
    )
    assert slept[:2] == pytest.approx([0.1, 0.1])
    assert 0.4 < slept[2] < slept[3] < slept[4]
    assert slept[5] > slept[6] > slept[7] >= 0.1


async def test_a_batch_over_the_slow_mark_pauses_at_least_as_long_as_it_took(
    settings: Settings, users: list[int], engine: AsyncEngine
) -> None:
    slept = await backoff_pauses(engine, settings, 6, [0.2, 0.2, 0.2], slow_batch_s=0.15, pause_ratio=0.25)
    assert slept == pytest.approx([0.2, 0.2])


async def test_a_statement_over_the_time_left_is_cancelled_and_rolled_back(
    settings: Settings, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """The batch runs under statement_timeout = the time left: a locked table makes it time out; nothing
    is half-deleted and the summary says the run is incomplete."""
    await seed_many_completed(db, 5, OLD)
    plan = PurgePlan.from_settings(settings, time_budget=1.0, processed_retention=None, dead_letter_retention=None)
    async with db.transaction():
        await db.execute("LOCK TABLE task IN EXCLUSIVE MODE")  # blocks DELETE, not SELECT
        summary = await purge(engine, plan, now=NOW)
    assert (summary.rows["task"], summary.complete) == (0, False)
    assert summary.seconds < 2.0
    assert await db.fetchval("SELECT count(*) FROM task WHERE completed_at < '2001-01-01'") == 5


@pytest.mark.parametrize(
    ("target", "index"),
    [
        (TASKS, "ix_task_completed_at_completed"),
        (PROCESSED_COMMANDS, "ix_processed_command_processed_at"),
        (DEAD_LETTERS, "ix_dead_letter_failed_at"),
    ],
)
async def test_each_batch_walks_the_tables_time_index(db: asyncpg.Connection, target: Target, index: str) -> None:
    """EXPLAIN: the batch's subquery is an index scan on the partial/time index, and the DELETE finds
    the rows by their address (TID scan), never by a sequential scan (the `id IN (subquery)` form got
    a hash semi join over the whole table)."""
    sql = target.delete_sql.text.replace(":cutoff", "$1").replace(":batch", "$2")
    async with db.transaction():
        # a near-empty test table would be read whole, or bitmap-scanned and sorted
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + sql, NOW, 5000))
    assert f"Index Scan using {index} on {target.table}" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert f"Tid Scan on {target.table}" in plan, plan


async def test_the_task_batch_uses_the_partial_index_on_a_real_sized_table(
    db: asyncpg.Connection, users: list[int]
) -> None:
    """With 20,000 completed and 2,000 open tasks analysed, the planner picks the partial index by itself."""
    await seed_many_completed(db, 20_000, OLD)
    await db.execute("ANALYZE task")
    sql = TASKS.delete_sql.text.replace(":cutoff", "$1").replace(":batch", "$2")
    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + sql, NOW, 5000))
    assert "Index Scan using ix_task_completed_at_completed on task" in plan, plan
    assert "Tid Scan on task" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_a_purge_racing_a_worker_loses_no_live_data(
    settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """A worker creates and completes 600 tasks while the purge deletes 20,000 old completed ones in
    batches of 500: both finish, every live task is there with its processed commands, no dead letter."""
    await seed_many_completed(db, 20_000, OLD)
    issued = datetime.now(UTC)
    creates = [
        CreateTask(command_id=uuid4(), issued_at=issued, task_id=uuid4(), user_id=1 + i % 20, title=f"live {i}")
        for i in range(600)
    ]
    completes = [
        CompleteTask(command_id=uuid4(), issued_at=issued + SECOND, task_id=c.task_id, user_id=c.user_id)
        for c in creates[::2]
    ]
    producer = TaskProducer(redis, queue=settings.queue)
    await producer.send_many(creates)
    await producer.send_many(completes)
    dead_before = await db.fetchval("SELECT count(*) FROM dead_letter")
    plan = PurgePlan.from_settings(settings, batch=500, time_budget=None, pause_ratio=0)

    summary, _ = await asyncio.gather(purge(engine, plan), run_burst(settings))

    assert summary.rows["task"] >= 20_000
    assert summary.complete
    assert await db.fetchval("SELECT count(*) FROM task WHERE completed_at < '2001-01-01'") == 0
    live = [c.task_id for c in creates]
    rows = await db.fetch("SELECT id, completed FROM task WHERE id = ANY($1::uuid[])", live)
    assert len(rows) == 600
    assert sum(r["completed"] for r in rows) == 300
    command_ids = [c.command_id for c in creates] + [c.command_id for c in completes]
    processed = "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])"
    assert await db.fetchval(processed, command_ids) == 900
    assert await db.fetchval("SELECT count(*) FROM dead_letter") == dead_before


async def test_three_schedulers_run_each_tick_exactly_once(
    settings: Settings, db: asyncpg.Connection, users: list[int]
) -> None:
    """Three scheduler workers (in process) with a tick every 2 s for ~7 s: every tick's purge runs once,
    whichever scheduler gets it; the old rows go in the first tick."""
    await seed_many_completed(db, 300, OLD)
    runs: dict[str, list[PurgeSummary | None]] = defaultdict(list)
    metrics = Metrics()
    schedule = {"minute": None, "second": set(range(0, 60, 2))}
    workers = [
        build_scheduler(
            settings,
            schedule=schedule,
            handle_signals=False,
            poll_delay=0.05,
            ctx={"settings": settings, "metrics": metrics, "purge_observer": lambda j, s: runs[j].append(s)},
        )
        for _ in range(3)
    ]
    mains = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        await wait_for(lambda: len(runs) >= 3, timeout=20, interval=0.1)
        await asyncio.sleep(1.0)  # a straggler of the last tick would show up by now
    finally:
        for worker in workers:
            await worker.close()
        for main in mains:
            with contextlib.suppress(asyncio.CancelledError):
                await main

    assert all(job_id.startswith(f"{PURGE_JOB}:") for job_id in runs)
    ran = {job_id: [s for s in outcomes if s is not None] for job_id, outcomes in runs.items()}
    assert all(len(done) == 1 for done in ran.values()), runs
    assert sum(done[0].rows["task"] for done in ran.values()) >= 300
    assert await db.fetchval("SELECT count(*) FROM task WHERE completed_at < '2001-01-01'") == 0
    assert metrics.registry.get_sample_value("taskline_purge_duration_seconds_count") == len(ran)


async def test_a_scheduler_beats_and_its_purge_metrics_reach_the_fleet_page(
    settings: Settings, db: asyncpg.Connection, users: list[int]
) -> None:
    """A scheduler writes a heartbeat of its own (role scheduler, under the scheduler's queue
    name, not counted as a worker); after a tick, its purge metrics are on `taskline metrics`'
    page, labelled with its id, and `taskline health --scheduler --all` passes."""
    await seed_many_completed(db, 50, OLD)
    settings = settings.model_copy(update={"heartbeat_interval": 0.2})
    runs: list[PurgeSummary | None] = []
    scheduler = build_scheduler(
        settings,
        schedule={"minute": None, "second": set(range(0, 60, 2))},
        handle_signals=False,
        poll_delay=0.05,
        ctx={"settings": settings, "purge_observer": lambda _job, summary: runs.append(summary)},
    )
    main = asyncio.create_task(scheduler.async_run())
    redis = Redis.from_url(settings.redis_url)
    index = workers_index_key(scheduler_queue(settings.queue))
    document: dict[str, Any] | None = None
    try:
        await wait_for(lambda: any(runs), timeout=20, interval=0.1)

        async def snapshot_has_the_purge() -> dict[str, Any] | None:
            documents = await live_workers(redis, scheduler_queue(settings.queue))
            names = {family["name"] for doc in documents for family in doc["metrics"]}
            return documents[0] if "taskline_purge_rows_deleted" in names else None

        document = await wait_for(snapshot_has_the_purge, timeout=10, interval=0.1)
        assert document["role"] == "scheduler"
        assert await live_workers(redis, settings.queue) == []  # not a worker

        page = await taskline(settings, "metrics")
        assert page.returncode == 0, page.stderr
        deleted = {
            (sample.labels["table"], sample.labels["worker"]): sample.value
            for family in text_string_to_metric_families(page.stdout)
            for sample in family.samples
            if sample.name == "taskline_purge_rows_deleted_total"
        }
        assert deleted[("task", document["worker_id"])] >= 50
        assert f'taskline_workers_live{{queue="{settings.queue}"}} 0.0' in page.stdout

        health = await taskline(settings, "health", "--scheduler", "--all", "--ready")
        assert health.returncode == 0, health.stdout + health.stderr
        assert "1 ready scheduler(s)" in health.stdout
    finally:
        await scheduler.close()
        with contextlib.suppress(asyncio.CancelledError):
            await main
        try:
            if document is not None:  # a clean stop leaves no heartbeat behind
                assert await redis.zscore(index, document["worker_id"]) is None
        finally:
            await redis.aclose()


async def feed(producer: TaskProducer, stop: asyncio.Event, tag: str) -> int:
    """A steady stream of small sends (5 creates every 10 ms) until `stop`; returns how many were sent."""
    sent = 0
    while not stop.is_set():
        issued = datetime.now(UTC)
        await producer.send_many(
            [
                CreateTask(
                    command_id=uuid4(), issued_at=issued, task_id=uuid4(), user_id=1 + i % 20, title=f"{tag} {i}"
                )
                for i in range(5)
            ]
        )
        sent += 5
        await asyncio.sleep(0.01)
    return sent


async def test_a_purge_under_a_busy_worker_yields_and_on_a_quiet_database_does_not(
    settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int], engine: AsyncEngine
) -> None:
    """A purge judged by the others' commit rate only (no slowdown back-off): alone it never pauses; beside
    a worker applying a steady stream (for a 3 s budget) it measures the worker's commits and pauses
    about four times each batch's time."""
    from worker.arq_seam.wiring import build_worker

    rules: dict[str, Any] = {"batch": 200, "time_budget": None, "contention_backoff": 0.0}
    rules |= {"quiet_commits_per_s": 2.0, "busy_commits_per_s": 10.0}
    await seed_many_completed(db, 6_000, OLD)
    quiet = await purge(engine, PurgePlan.from_settings(settings, **rules), now=NOW)
    assert quiet.rows["task"] == 6_000
    assert quiet.paused_s == 0.0
    assert quiet.others_commits_per_s is None or quiet.others_commits_per_s < 2

    # Enough rows for the whole time budget: the run lasts 2.4 s (the tasks' share of 3 s), several of
    # the commit rate's one-second windows, however fast the machine.
    await seed_many_completed(db, 60_000, OLD)
    worker = build_worker(settings, handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    stop = asyncio.Event()
    feeding = asyncio.create_task(feed(TaskProducer(redis, queue=settings.queue), stop, "busy"))
    try:
        await wait_for(lambda: db.fetchval("SELECT count(*) FROM task WHERE title LIKE 'busy %'"), timeout=60)
        rules["time_budget"] = 3.0
        busy = await purge(engine, PurgePlan.from_settings(settings, start_busy=True, **rules), now=NOW)
        stop.set()
        sent = await feeding

        async def all_applied() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM task WHERE title LIKE 'busy %'") == sent)

        await wait_for(all_applied, timeout=60)
        await wait_for(lambda: all(job.done() for job in worker.tasks.values()), timeout=30)  # nothing in flight
    finally:
        stop.set()
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert busy.rows["task"] > 0
    assert busy.others_commits_per_s is not None, busy.as_dict()
    assert busy.others_commits_per_s >= 10, busy.as_dict()
    # Nominally 4 × the batches' time; the rest of the time not paused also holds the event loop's share
    # of the in-process worker and the feeder, so the bound is looser than the rule.
    worked = busy.seconds - busy.paused_s
    assert busy.paused_s >= 2 * worked, busy.as_dict()
