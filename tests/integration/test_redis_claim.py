"""The test suite (and the benchmark) claims a Redis database only if it is empty, and writes nothing into one
that is not."""

from __future__ import annotations

import pytest
import redis as redis_sync

from tests.conftest import RUN_ID
from tests.support.services import CLAIM_KEY, REDIS_BASE_URL, claim_redis_database

pytestmark = pytest.mark.integration


def persistent_keys(client: redis_sync.Redis) -> dict[bytes, bytes]:
    """Every key without a time to live, with its value. Keys that earlier tests left to expire
    (outcomes, try counters) may vanish between two readings on a busy machine; they are not
    what the claim could have touched."""
    return {key: client.dump(key) for key in client.keys("*") if client.ttl(key) == -1}


def test_a_database_that_is_not_empty_is_left_exactly_as_it_was(redis_url):
    """Claiming this run's own database (not empty), as another run would with a claim key of its
    own, fails and writes nothing into it."""
    db = int(redis_url.rsplit("/", 1)[1])
    client = redis_sync.Redis.from_url(redis_url)
    try:
        client.set("someone-elses-key", "data")
        before = persistent_keys(client)
        claimed = claim_redis_database(REDIS_BASE_URL, "another-run", candidates=[db], key="taskline-test:other-run")
        assert claimed is None
        after = persistent_keys(client)
        assert client.exists("taskline-test:other-run") == 0
        assert after == before
        assert client.get(CLAIM_KEY) == RUN_ID.encode()
    finally:
        client.delete("someone-elses-key")
        client.close()


def test_the_run_took_a_database_that_taskline_test_redis_dbs_allows(redis_url):
    """This run's database is one of those TASKLINE_TEST_REDIS_DBS allows (default 1-15)."""
    from tests.support.services import allowed_redis_databases

    assert int(redis_url.rsplit("/", 1)[1]) in allowed_redis_databases()


def test_only_the_allowed_databases_are_claimed(monkeypatch, redis_url):
    """With TASKLINE_TEST_REDIS_DBS naming only this run's (taken) database, nothing is claimed:
    no other database is tried."""
    db = int(redis_url.rsplit("/", 1)[1])
    monkeypatch.setenv("TASKLINE_TEST_REDIS_DBS", str(db))
    assert claim_redis_database(REDIS_BASE_URL, "another-run", key="taskline-test:other-run") is None
