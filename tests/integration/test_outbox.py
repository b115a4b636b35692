"""The outbox and its relay, in-process, against the real PostgreSQL and Redis: what the producer's
call writes, what a relay step publishes, confirms, re-publishes, refuses and prunes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from taskline_producer import keys
from taskline_producer.contract import CreateTask
from taskline_producer.outbox import add_to_outbox, outbox_table

from tests.conftest import run_burst
from tests.support.outbox import creates_and_updates, insert_commands, reset_outbox
from worker.config.settings import Settings
from worker.relay.process import build_relay, close_relay
from worker.relay.relay import Relay

pytestmark = pytest.mark.integration


@pytest.fixture
async def outbox(database_url: str) -> str:
    await reset_outbox(database_url)
    return database_url


@pytest.fixture
async def relay(settings: Settings, outbox: str) -> AsyncIterator[Relay]:
    built = build_relay(settings.model_copy(update={"relay_republish_after": 0.3, "relay_retention": 0.0}))
    yield built
    await close_relay(built)


def _create(user_id: int = 1, title: str = "outbox") -> CreateTask:
    return CreateTask(command_id=uuid4(), issued_at=datetime.now(UTC), task_id=uuid4(), user_id=user_id, title=title)


async def test_add_to_outbox_writes_rows_in_an_async_session_only_when_it_commits(outbox: str) -> None:
    """add_to_outbox adds rows to an AsyncSession's transaction: committed they are there, with the
    command's JSON and its command id; rolled back nothing is."""
    engine = create_async_engine(outbox)
    kept, dropped = _create(), [_create(), _create()]
    try:
        async with AsyncSession(engine) as session, session.begin():
            rows = add_to_outbox(session, kept)
        assert len(rows) == 1
        with pytest.raises(RuntimeError):
            await _add_then_fail(engine, dropped)
        async with engine.connect() as conn:
            found = (await conn.execute(sa.select(outbox_table.c.function, outbox_table.c.command_id))).all()
    finally:
        await engine.dispose()
    assert found == [("create_task", str(kept.command_id))]


async def _add_then_fail(engine: Any, commands: list[CreateTask]) -> None:
    async with AsyncSession(engine) as session, session.begin():
        add_to_outbox(session, commands)
        await session.flush()
        raise RuntimeError("the service's own write failed")


def test_add_to_outbox_takes_many_commands_in_a_sync_session(outbox: str) -> None:
    """The same call adds many commands to a synchronous Session (psycopg), in one flush."""
    engine = sa.create_engine(outbox.replace("postgresql+asyncpg://", "postgresql+psycopg://"))
    commands = creates_and_updates(10)
    try:
        with Session(engine) as session, session.begin():
            add_to_outbox(session, commands)
        with engine.connect() as conn:
            ids = conn.execute(sa.select(outbox_table.c.command_id).order_by(outbox_table.c.id)).scalars().all()
    finally:
        engine.dispose()
    assert ids == [str(c.command_id) for c in commands]


def test_add_to_outbox_refuses_what_is_not_a_command() -> None:
    """Only validated commands go in: a dict is refused with a TypeError naming the models."""
    with pytest.raises(TypeError, match="CreateTask, UpdateTask or CompleteTask"):
        add_to_outbox(Session(), [{"title": "x"}])  # type: ignore[list-item]


async def test_relay_publishes_confirms_and_prunes(
    relay: Relay, settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int]
) -> None:
    """A publish step enqueues every committed row as its own job (job id = command id, asking for
    outcomes); once the worker applied them a confirm step records `applied`; prune deletes them."""
    commands = creates_and_updates(30)
    await insert_commands(db, commands)
    assert await relay.publish() == 30
    assert await redis.zcard(settings.queue) == 30
    assert await redis.exists(keys.job_key(str(commands[0].command_id)))
    assert await relay.publish() == 0
    await run_burst(settings)
    await db.execute("UPDATE taskline_outbox SET next_check_at = now()")
    assert await relay.confirm() == 30
    outcomes = await db.fetch("SELECT outcome, publications FROM taskline_outbox")
    assert {(r["outcome"], r["publications"]) for r in outcomes} == {("applied", 1)}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])",
            [c.command_id for c in commands],
        )
        == 30
    )
    assert await relay.prune() == 30
    assert await db.fetchval("SELECT count(*) FROM taskline_outbox") == 0


async def test_relay_republishes_what_redis_lost_but_not_what_is_still_queued(
    relay: Relay, settings: Settings, redis: Redis, db: asyncpg.Connection, users: list[int]
) -> None:
    """After the window, a published command Redis holds no job for (even if its last outcome says
    retrying) is published again; one still
    queued is only asked about later; the worker then applies each once."""
    commands = creates_and_updates(4)
    await insert_commands(db, commands)
    assert await relay.publish() == 4
    lost = str(commands[0].command_id)
    await redis.delete(keys.job_key(lost))
    await redis.zrem(settings.queue, lost)
    # a FLUSHALL between a worker's retry and its next try leaves the outcome "retrying", no job
    retrying = {"command_id": lost, "state": "retrying", "reason": "not yet", "at": datetime.now(UTC).isoformat()}
    await redis.set(keys.outcome_key(lost), json.dumps(retrying))
    await db.execute("UPDATE taskline_outbox SET next_check_at = now(), published_at = now() - interval '1 s'")
    assert await relay.confirm() == 4
    rows = {
        r["command_id"]: r["publications"]
        for r in await db.fetch("SELECT command_id, publications FROM taskline_outbox")
    }
    assert rows[lost] == 2
    assert sorted(rows.values()) == [1, 1, 1, 2]
    assert relay.counts.republished == 1
    assert await redis.zcard(settings.queue) == 4
    await run_burst(settings)
    applied = await db.fetchval(
        "SELECT count(*) FROM processed_command WHERE command_id = ANY($1::uuid[])", [c.command_id for c in commands]
    )
    assert applied == 4


async def test_relay_marks_an_invalid_row_with_the_workers_reason_and_never_publishes_it(
    relay: Relay, settings: Settings, redis: Redis, db: asyncpg.Connection
) -> None:
    """A row that breaks the contract is kept with the reason the worker's decoder gives, counted,
    and not published; a row naming no command function is refused too."""
    command = _create().model_dump(mode="json")
    command["title"] = ""
    await db.execute(
        "INSERT INTO taskline_outbox (function, command) VALUES ('create_task', $1::jsonb)",
        json.dumps(command),
    )
    await db.execute("INSERT INTO taskline_outbox (function, command) VALUES ('drop_tables', '{}')")
    assert await relay.publish() == 2
    reasons = [r["invalid_reason"] for r in await db.fetch("SELECT invalid_reason FROM taskline_outbox ORDER BY id")]
    assert "title" in reasons[0]
    assert "at least 1 character" in reasons[0]
    assert "function must be one of" in reasons[1]
    assert relay.counts.invalid == 2
    assert await redis.zcard(settings.queue) == 0
    figures = await relay.figures()
    assert (figures.invalid, figures.unpublished) == (2, 0)
    assert await relay.publish() == 0


async def test_two_relays_take_different_rows(settings: Settings, outbox: str, db: asyncpg.Connection) -> None:
    """Two relays publishing at once lock different rows (FOR UPDATE SKIP LOCKED): each row is
    published once."""
    import asyncio

    await insert_commands(db, creates_and_updates(400))
    small = settings.model_copy(update={"relay_batch": 50})
    first, second = build_relay(small), build_relay(small)
    try:

        async def drain(relay: Relay) -> None:
            while await relay.publish():
                pass

        await asyncio.gather(drain(first), drain(second))
    finally:
        await close_relay(first)
        await close_relay(second)
    assert first.counts.published + second.counts.published == 400
    assert first.counts.published > 0
    assert second.counts.published > 0
    assert await db.fetchval("SELECT max(publications) FROM taskline_outbox") == 1


async def test_the_sql_file_and_the_sqlalchemy_table_agree(outbox: str, db: asyncpg.Connection) -> None:
    """outbox.sql (the schema's home) creates exactly the columns `outbox_table` declares, with the
    same nullability, so the producer's call and the relay's statements fit the table."""
    rows = await db.fetch(
        "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'taskline_outbox'"
    )
    in_database = {r["column_name"]: r["is_nullable"] == "YES" for r in rows}
    declared = {c.name: bool(c.nullable) and not c.primary_key for c in outbox_table.c}
    assert in_database == declared


def test_the_outbox_database_defaults_to_database_url(database_url: str) -> None:
    """TASKLINE_OUTBOX_DATABASE_URL is optional: the relay reads DATABASE_URL's database unless it
    is set, and messages name whichever variable is in force."""
    plain = Settings(DATABASE_URL=database_url)  # type: ignore[call-arg]
    assert (plain.outbox_url, plain.outbox_setting) == (plain.database_url, "DATABASE_URL")
    other = Settings(DATABASE_URL=database_url, TASKLINE_OUTBOX_DATABASE_URL="postgres://u@h/producer")  # type: ignore[call-arg]
    assert other.outbox_url == "postgresql+asyncpg://u@h/producer"
    assert other.outbox_setting == "TASKLINE_OUTBOX_DATABASE_URL"


async def test_a_relay_with_its_key_feeds_workers_that_require_signatures(
    settings: Settings, outbox: str, redis: Redis, db: asyncpg.Connection, users: list[int]
) -> None:
    """With TASKLINE_RELAY_KEY_ID/SECRET the relay signs every job it publishes (and each
    re-publication): a worker with TASKLINE_REQUIRE_SIGNATURES applies them all, recorded as signed
    by the relay's key; the same rows published unsigned would be dead letters."""
    from worker.config.signing_keys import parse_signing_keys

    secret = "relay-secret-" + "0" * 30
    signing = settings.model_copy(
        update={
            "signing_keys": parse_signing_keys({"relay-1": {"secret": secret}}),
            "require_signatures": True,
            "relay_key_id": "relay-1",
            "relay_key_secret": SecretStr(secret),
            "relay_republish_after": 0.3,
        }
    )
    commands = creates_and_updates(20)
    await insert_commands(db, commands)
    relay = build_relay(signing)
    try:
        assert await relay.publish() == 20
        lost = str(commands[0].command_id)  # lost by Redis: published again, signed again
        await redis.delete(keys.job_key(lost))
        await redis.zrem(signing.queue, lost)
        await db.execute("UPDATE taskline_outbox SET next_check_at = now(), published_at = now() - interval '1 s'")
        assert await relay.confirm() == 20
        assert relay.counts.republished == 1
        await run_burst(signing)
    finally:
        await close_relay(relay)
    signed_by = await db.fetch(
        "SELECT signed_by FROM processed_command WHERE command_id = ANY($1::uuid[])", [c.command_id for c in commands]
    )
    assert [r["signed_by"] for r in signed_by] == ["relay-1"] * 20
    # the run's database is shared by every test: only this test's queue counts
    assert await db.fetchval("SELECT count(*) FROM dead_letter WHERE queue = $1", signing.queue) == 0


def test_the_trace_page_tells_a_commands_outbox_story(
    settings: Settings, outbox: str, redis_url: str, users: list[int]
) -> None:
    """The page's trace of an outbox command shows its row: added, published, re-published (Redis
    lost it) and confirmed with its outcome, read from TASKLINE_OUTBOX_DATABASE_URL's database;
    that URL's password shows nowhere on the page."""
    import asyncio

    from starlette.testclient import TestClient

    from worker.web.app import create_app

    async def arrange() -> str:
        db = await asyncpg.connect(outbox)
        redis = Redis.from_url(redis_url)
        relay = build_relay(settings.model_copy(update={"relay_republish_after": 0.3}))
        try:
            command = _create(title="traced through the outbox")
            await insert_commands(db, [command])
            assert await relay.publish() == 1
            await redis.delete(keys.job_key(str(command.command_id)))
            await redis.zrem(settings.queue, str(command.command_id))
            await db.execute("UPDATE taskline_outbox SET next_check_at = now(), published_at = now() - interval '1 s'")
            assert await relay.confirm() == 1
            assert relay.counts.republished == 1
            await run_burst(settings)
            await db.execute("UPDATE taskline_outbox SET next_check_at = now()")
            assert await relay.confirm() == 1
            return str(command.command_id)
        finally:
            await close_relay(relay)
            await redis.aclose()
            await db.close()

    command_id = asyncio.run(arrange())
    # Another spelling of the same database, with a password that trust authentication ignores:
    # the page opens an engine of its own for TASKLINE_OUTBOX_DATABASE_URL.
    other = outbox.replace("127.0.0.1", "localhost") + "?password=s3cret-outbox"
    web_settings = settings.model_copy(update={"outbox_database_url": other})
    assert web_settings.outbox_url != web_settings.database_url
    with TestClient(create_app(web_settings, watch=False)) as client:
        page = client.get(f"/trace?id={command_id}")
        assert page.status_code == 200
        html = page.text
        assert 'data-field="outbox"' in html
        assert "re-published 1 time" in html
        assert "Redis had lost it" in html
        assert "confirmed applied" in html
        assert "added " in html
        assert "published " in html
        for path in ("/", f"/trace?id={command_id}", "/api/status"):
            assert "s3cret-outbox" not in client.get(path).text


async def test_a_publish_step_that_loses_redis_rolls_back_its_batch_and_the_one_claimed_ahead(
    settings: Settings, outbox: str, db: asyncpg.Connection
) -> None:
    """Redis fails while a batch goes out and the next one is already claimed: the step raises
    RedisUnavailable, both batches are rolled back (unpublished, unlocked, no publication counted),
    and a relay whose Redis answers then publishes every row once."""
    from worker.relay.relay import RedisUnavailable

    await insert_commands(db, creates_and_updates(30))
    small = settings.model_copy(update={"relay_batch": 10})
    broken = build_relay(small.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    try:
        with pytest.raises(RedisUnavailable):
            await broken.publish()
        assert broken.counts.published == 0
        # before the relay closes its connections: nothing is left locked or recorded
        unlocked = "SELECT count(*) FROM (SELECT id FROM taskline_outbox FOR UPDATE SKIP LOCKED) s"
        assert await db.fetchval(unlocked) == 30
        unpublished = "SELECT count(*), max(publications) FROM taskline_outbox WHERE published_at IS NULL"
        assert tuple(await db.fetchrow(unpublished)) == (30, 0)
    finally:
        await close_relay(broken)
    working = build_relay(small)
    try:
        assert await working.publish() == 30
    finally:
        await close_relay(working)
    assert await db.fetchval("SELECT count(*) FROM taskline_outbox WHERE publications = 1") == 30


async def test_a_publish_step_sends_batch_after_batch_and_holds_nothing_after(
    settings: Settings, outbox: str, redis: Redis, db: asyncpg.Connection
) -> None:
    """With batches of 10, one step publishes up to its limit of batches (each claimed while the
    one before goes out), the next step the rest; once a step returns, no row is left locked."""
    from worker.relay.relay import PUBLISH_BATCHES_PER_STEP

    total = 10 * PUBLISH_BATCHES_PER_STEP + 5
    await insert_commands(db, creates_and_updates(total))
    relay = build_relay(settings.model_copy(update={"relay_batch": 10}))
    try:
        assert await relay.publish() == 10 * PUBLISH_BATCHES_PER_STEP
        locked = await db.fetchval("SELECT count(*) FROM (SELECT id FROM taskline_outbox FOR UPDATE SKIP LOCKED) s")
        assert locked == total  # every row can be locked by someone else: the relay holds none
        assert await relay.publish() == 5
        assert await relay.publish() == 0
    finally:
        await close_relay(relay)
    assert await redis.zcard(settings.queue) == total
    assert await db.fetchval("SELECT max(publications) FROM taskline_outbox") == 1
