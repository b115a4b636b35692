"""Issue 17's redaction, end to end: a password given as `?password=` in DATABASE_URL or REDIS_URL
(and as `user:password@`) never leaves the process through the real command lines (their output,
their errors, `status --json`, `health --json`, `metrics`) nor the page, even when the service it
names cannot be reached and the URL is quoted in the error."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import taskline
from worker.web.app import create_app

pytestmark = pytest.mark.acceptance

DB_SECRET = "db-s3cret-4711"
REDIS_SECRET = "redis-s3cret-0815"
UNREACHABLE_REDIS = f"redis://taskline:{REDIS_SECRET}@127.0.0.1:1/0?password={REDIS_SECRET}"


UNREACHABLE_DB = f"postgresql://taskline:{DB_SECRET}@127.0.0.1:1/tasks?password={DB_SECRET}"


@pytest.fixture
def secret_settings(settings):
    """The test's settings with both URLs carrying a password (PostgreSQL here trusts local
    connections, so the database still answers; the Redis URL names a port nothing listens on)."""
    return settings.model_copy(
        update={"database_url": f"{settings.database_url}?password={DB_SECRET}", "redis_url": UNREACHABLE_REDIS}
    )


@pytest.mark.parametrize(
    ("args", "unreachable"),
    [
        (("status", "--json"), "redis"),
        (("status",), "redis"),
        (("health", "--json"), "redis"),
        (("metrics",), "redis"),
        (("status", "--json"), "database"),
        (("dead-letters", "list", "--json"), "database"),
        (("trace", "00000000-0000-4000-8000-000000000000", "--json"), "database"),
    ],
)
async def test_no_command_line_shows_a_password_from_a_url(secret_settings, args, unreachable):
    """Each command, with Redis (or the database) unreachable at a URL carrying a password,
    fails or reports the outage naming the URL's host and port; neither secret appears anywhere
    in its output."""
    if unreachable == "database":
        secret_settings = secret_settings.model_copy(update={"database_url": UNREACHABLE_DB})
    done = await taskline(secret_settings, *args)
    output = done.stdout + done.stderr
    assert DB_SECRET not in output, output
    assert REDIS_SECRET not in output, output
    assert "127.0.0.1:1" in output, output


async def test_the_page_shows_no_password_from_a_url(secret_settings):
    """The fleet page and the dead letter page, with Redis unreachable, show neither secret."""
    with TestClient(create_app(secret_settings, watch=False), raise_server_exceptions=False) as client:
        for path in ("/", "/dead-letters", "/queue"):
            page = client.get(path).text
            assert DB_SECRET not in page, path
            assert REDIS_SECRET not in page, path
