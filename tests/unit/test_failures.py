"""Failure classification and the retry policy: what is retried, for how long, and with what delays."""

from __future__ import annotations

import random

import asyncpg
import pytest
import redis.exceptions
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

from worker.pipeline.apply import Outcome
from worker.pipeline.failures import Kind, RetryPolicy, classify_exception, classify_outcome

DEFAULTS = RetryPolicy(transient_tries=8, not_yet_window=120.0, base_delay=0.2, max_delay=15.0)


def sqlalchemy_error(pg_error: Exception) -> sa_exc.DBAPIError:
    """`pg_error` as it reaches the worker: translated by SQLAlchemy's asyncpg dialect, then wrapped."""
    dbapi = sa_asyncpg.AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        sa_asyncpg.AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, pg_error)
    except dbapi.Error as translated:
        return sa_exc.DBAPIError.instance("UPDATE task SET title = $1", ("x",), translated, dbapi.Error)
    raise AssertionError("the dialect did not translate the error")


class _DriverError(Exception):
    """A DB-API error carrying its SQLSTATE directly (the psycopg-style shape)."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# -- classify_exception ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
    ids=lambda e: type(e).__module__ + "." + type(e).__name__,
)
def test_timeouts_and_refused_connections_are_transient(exc: BaseException) -> None:
    """Timeouts and dropped or refused connections (database or Redis) are transient."""
    assert classify_exception(exc)[0] is Kind.TRANSIENT


@pytest.mark.parametrize(
    "pg_error",
    [
        asyncpg.exceptions.SerializationError("could not serialize access due to concurrent update"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.LockNotAvailableError("could not obtain lock"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients already"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    ],
    ids=lambda e: e.sqlstate,
)
def test_retryable_sqlstates_from_the_asyncpg_dialect_are_transient(pg_error: Exception) -> None:
    """40001, 40P01, 55P03, 53300 and 57P01 arriving through SQLAlchemy's asyncpg dialect are transient."""
    kind, reason = classify_exception(sqlalchemy_error(pg_error))
    assert kind is Kind.TRANSIENT
    assert pg_error.sqlstate in reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "pg_error",
    [
        asyncpg.exceptions.UniqueViolationError('duplicate key value violates unique constraint "task_pkey"'),
        asyncpg.exceptions.CheckViolationError("new row violates check constraint"),
        asyncpg.exceptions.StringDataRightTruncationError("value too long for type character varying(200)"),
    ],
    ids=lambda e: e.sqlstate,
)
def test_constraint_violations_are_permanent(pg_error: Exception) -> None:
    """23505 (unique violation), 23514 and 22001 can never succeed on retry: permanent, with the SQLSTATE."""
    kind, reason = classify_exception(sqlalchemy_error(pg_error))
    assert kind is Kind.PERMANENT
    assert f"({pg_error.sqlstate})" in reason  # type: ignore[attr-defined]
    assert "UPDATE task" not in reason  # the statement and its parameters stay out of the reason


@pytest.mark.parametrize(
    ("sqlstate", "kind"), [("40001", Kind.TRANSIENT), ("40P01", Kind.TRANSIENT), ("23505", Kind.PERMANENT)]
)
def test_the_sqlstate_on_the_driver_error_itself_is_used(sqlstate: str, kind: Kind) -> None:
    """A DBAPIError whose orig carries .sqlstate is classified by it."""
    error = sa_exc.DBAPIError("INSERT", None, _DriverError("failed", sqlstate))
    assert classify_exception(error)[0] is kind


def test_an_unknown_connection_class_sqlstate_is_transient() -> None:
    """Any SQLSTATE of class 08 (connection exception) is transient, even one not listed."""
    error = sa_exc.DBAPIError("SELECT 1", None, _DriverError("protocol violation", "08P01"))
    assert classify_exception(error)[0] is Kind.TRANSIENT


def test_an_invalidated_connection_is_transient() -> None:
    """A DBAPIError flagged connection_invalidated is transient whatever its SQLSTATE."""
    error = sa_exc.DBAPIError("SELECT 1", None, _DriverError("gone", "23505"), connection_invalidated=True)
    assert classify_exception(error) == (Kind.TRANSIENT, "database connection lost")


def test_an_unforeseen_exception_is_retried_as_transient() -> None:
    """An exception nobody classified is retried (then dead-lettered), never dropped."""
    kind, reason = classify_exception(KeyError("surprise"))
    assert kind is Kind.TRANSIENT
    assert reason.startswith("unexpected KeyError")


# -- classify_outcome --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (Outcome.APPLIED, None),
        (Outcome.DUPLICATE, None),
        (Outcome.CONFLICT, Kind.PERMANENT),
        (Outcome.FORBIDDEN, Kind.PERMANENT),
        (Outcome.TASK_MISSING, Kind.NOT_YET),
        (Outcome.USER_MISSING, Kind.NOT_YET),
    ],
)
def test_outcomes_are_classified(outcome: Outcome, kind: Kind | None) -> None:
    """Applied and duplicate succeed; conflict and forbidden are permanent; missing task or user is not-yet."""
    result = classify_outcome(outcome)
    assert (result[0] if result else None) is kind
    if result:
        assert outcome.value.split("_")[0] in result[1]


# -- RetryPolicy: delays --------------------------------------------------------------------------


def test_the_delay_ceiling_doubles_from_base_and_is_capped() -> None:
    """Try n's ceiling is min(max_delay, base_delay * 2**(n-1))."""
    ceilings = [DEFAULTS.ceiling(n) for n in range(1, 10)]
    assert ceilings == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 15.0, 15.0])


def test_the_delay_ceiling_stays_capped_for_huge_attempt_numbers() -> None:
    """Even attempt 10,000 waits at most max_delay (no overflow)."""
    assert DEFAULTS.ceiling(10_000) == 15.0


@pytest.mark.parametrize("attempt", range(1, 13))
def test_delays_lie_between_half_and_all_of_the_ceiling(attempt: int) -> None:
    """Every drawn delay lies in [0.5, 1.0] × the ceiling, so never above max_delay."""
    ceiling = DEFAULTS.ceiling(attempt)
    delays = [DEFAULTS.delay(attempt) for _ in range(500)]
    assert all(0.5 * ceiling <= d <= ceiling <= DEFAULTS.max_delay for d in delays)
    assert max(delays) - min(delays) > 0.2 * ceiling  # jittered, not constant


def test_the_jitter_spans_exactly_half_to_all_of_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delay is ceiling × uniform(0.5, 1.0): the extremes of the draw give exactly half and all of it."""
    calls: list[tuple[float, float]] = []

    def extreme(low: float, high: float) -> float:
        calls.append((low, high))
        return low if len(calls) == 1 else high

    monkeypatch.setattr(random, "uniform", extreme)
    assert DEFAULTS.delay(3) == pytest.approx(0.4)
    assert DEFAULTS.delay(3) == pytest.approx(0.8)
    assert calls == [(0.5, 1.0), (0.5, 1.0)]


def test_waited_at_least_sums_the_shortest_possible_delays() -> None:
    """The lower bound before attempt n is the sum of half the ceilings of attempts 1..n-1."""
    assert DEFAULTS.waited_at_least(1) == 0
    assert DEFAULTS.waited_at_least(4) == pytest.approx(0.1 + 0.2 + 0.4)


# -- RetryPolicy: budgets ----------------------------------------------------------------------------


def test_permanent_failures_are_never_retried() -> None:
    """A permanent failure is dead-lettered on its first attempt."""
    assert not DEFAULTS.should_retry(Kind.PERMANENT, 1)


def test_transient_retries_stop_at_transient_tries() -> None:
    """With transient_tries = 8, attempts 1–7 are retried and attempt 8 is the last."""
    decisions = [DEFAULTS.should_retry(Kind.TRANSIENT, n) for n in range(1, 10)]
    assert decisions == [True] * 7 + [False] * 2


def test_a_single_transient_try_means_no_retry() -> None:
    """transient_tries = 1 dead-letters a transient failure on its first attempt."""
    policy = RetryPolicy(transient_tries=1, not_yet_window=60, base_delay=0.2, max_delay=15)
    assert not policy.should_retry(Kind.TRANSIENT, 1)


def _last_not_yet_attempt(policy: RetryPolicy) -> int:
    attempt = 1
    while policy.should_retry(Kind.NOT_YET, attempt):
        attempt += 1
        assert attempt < 10_000
    return attempt


@pytest.mark.parametrize(
    "policy",
    [
        DEFAULTS,
        RetryPolicy(transient_tries=8, not_yet_window=60.0, base_delay=0.2, max_delay=15.0),
        RetryPolicy(transient_tries=8, not_yet_window=60.0, base_delay=0.05, max_delay=0.5),
        RetryPolicy(transient_tries=3, not_yet_window=60.0, base_delay=10.0, max_delay=60.0),
    ],
    ids=["defaults", "window-60", "test-settings", "slow-backoff"],
)
def test_not_yet_retries_continue_until_the_window_has_provably_passed(policy: RetryPolicy) -> None:
    """The last not-yet attempt runs at least not_yet_window after the first, and no attempt is wasted beyond."""
    last = _last_not_yet_attempt(policy)
    assert policy.waited_at_least(last) >= policy.not_yet_window
    assert policy.waited_at_least(last - 1) < policy.not_yet_window


def test_not_yet_gives_up_after_at_least_the_window_even_with_the_shortest_delays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated with every jittered delay at its minimum, the time from first to last attempt is ≥ the window."""
    policy = RetryPolicy(transient_tries=8, not_yet_window=60.0, base_delay=0.2, max_delay=15.0)
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    elapsed, attempt = 0.0, 1
    while policy.should_retry(Kind.NOT_YET, attempt):
        elapsed += policy.delay(attempt)
        attempt += 1
    assert elapsed >= 60.0
    assert not policy.should_retry(Kind.NOT_YET, attempt)
