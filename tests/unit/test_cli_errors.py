"""How the CLIs recognise PostgreSQL and Redis failing them, and what they say (no I/O here)."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import exc as sa_exc
from taskline_producer.cli_errors import ServiceProblem, ServiceUnavailable, causes, redact_url, redis_problem

from worker.observe.service_errors import database_problem, describe, explain


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:p%40ss@db:5432/x?sslmode=require", "postgresql://user:***@db:5432/x?sslmode=require"),
        ("postgresql://user@db/x", "postgresql://user@db/x"),
        ("rediss://default:s@cache.example.com:6380", "rediss://default:***@cache.example.com:6380"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    """The producer's own redaction (it may not import worker code) hides the password and keeps the rest."""
    assert redact_url(url) == shown


def test_causes_walks_chains_and_exception_groups() -> None:
    """An error wrapped by SQLAlchemy or inside a TaskGroup's ExceptionGroup is still found."""
    inner = ConnectionRefusedError(111, "refused")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        group = ExceptionGroup("tasks", [ValueError("other"), wrapped])
    assert inner in list(causes(group))


def test_redis_refusals_and_outages_get_different_advice() -> None:
    """A refused password says to check the credentials; a refused connection says to check host and port."""
    auth = redis_problem(AuthenticationError("invalid password"), "redis://:pw@h/0")
    assert auth is not None
    assert "user and password" in auth.hint
    noauth = redis_problem(ResponseError("NOAUTH Authentication required."), "redis://h/0")
    assert noauth is not None
    assert "user and password" in noauth.hint
    down = redis_problem(RedisConnectionError("Error 111 connecting"), "redis://:pw@h/0")
    assert down is not None
    assert "host, port" in down.hint
    assert "pw" not in down.message()
    assert redis_problem(ValueError("not redis"), "redis://h/0") is None


def test_a_problem_raised_with_its_url_wins_over_the_environment() -> None:
    """taskline-send knows the URL it used (--redis-url): a ServiceUnavailable carries it."""
    problem = ServiceProblem("Redis", "REDIS_URL or --redis-url", "redis://:x@given/1", "ConnectionError", "hint")
    with pytest.raises(ServiceUnavailable) as raised:
        raise ServiceUnavailable(problem) from RedisConnectionError("down")
    assert redis_problem(raised.value, "redis://from-env/0") is problem
    assert explain(raised.value) is problem


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (asyncpg.InvalidPasswordError("password authentication failed"), "user and password"),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), "createdb"),
        (asyncpg.UndefinedTableError('relation "dead_letter" does not exist'), "taskline migrate"),
        (asyncpg.TooManyConnectionsError("too many clients"), "max_connections"),
    ],
)
def test_postgresql_refusals_get_advice_of_their_own(error: Exception, advice: str) -> None:
    """Wrapped by SQLAlchemy as they are in practice, asyncpg's refusals each get their advice."""
    wrapped = sa_exc.DBAPIError("SELECT 1", None, error)
    wrapped.__cause__ = error
    problem = database_problem(wrapped, "postgresql://u:secret@db/x")
    assert problem is not None
    assert advice in problem.hint
    assert "secret" not in problem.message()


def test_a_bare_socket_error_is_attributed_by_where_it_was_raised() -> None:
    """asyncpg reports a refused connection as a bare OSError: it is PostgreSQL's only when raised
    inside asyncpg or SQLAlchemy; a bare OSError from elsewhere is nobody's (left as a traceback)."""
    assert explain(ConnectionRefusedError(111, "refused")) is None
    assert describe(ValueError("plain")) == "ValueError: plain"
