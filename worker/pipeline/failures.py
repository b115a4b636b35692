"""Every failure is classified here, and here it is decided what happens to it.

* permanent: the job can never succeed (it breaks the contract, conflicts, or targets another
  user's task). Dead-lettered on the first attempt.
* transient: the world was briefly wrong (a connection dropped, a deadlock, a serialization
  failure, a timeout). Retried with exponential backoff and jitter, up to
  `TASKLINE_TRANSIENT_TRIES` tries, then dead-lettered.
* not yet: the command depends on another one that may still be in flight (its task or user
  does not exist yet). Retried with backoff for at least `TASKLINE_NOT_YET_WINDOW` seconds
  from the first attempt, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc

from worker.pipeline.apply import Outcome
from worker.text import first_line

__all__ = ["Kind", "RetryPolicy", "classify_exception", "classify_outcome", "is_database_unreachable"]

# SQLSTATEs worth another try: serialization failure, deadlock, lock/statement timeouts,
# too many connections, admin/crash shutdowns, cannot connect now, connection exceptions.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",
        "40P01",
        "55P03",
        "57014",
        "53300",
        "57P01",
        "57P02",
        "57P03",
        "08000",
        "08003",
        "08006",
        "08001",
        "08004",
        "08007",
    }
)


class Kind(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    NOT_YET = "not_yet"


_OUTCOME_FAILURES: dict[Outcome, tuple[Kind, str]] = {
    Outcome.CONFLICT: (
        Kind.PERMANENT,
        "conflict: another command already created this task id; send update_task to change it,"
        " or create_task with a new task_id",
    ),
    Outcome.FORBIDDEN: (
        Kind.PERMANENT,
        "forbidden: the task belongs to another user; a command may only touch its own user's tasks",
    ),
    Outcome.TASK_MISSING: (
        Kind.NOT_YET,
        "task not found: no create_task for this task_id has been applied yet (send it, then replay)",
    ),
    Outcome.USER_MISSING: (
        Kind.NOT_YET,
        "user not found: no row in the user table has this user_id yet (create the user, then replay)",
    ),
}


def classify_outcome(outcome: Outcome) -> tuple[Kind, str] | None:
    """None when the outcome is a success; otherwise its kind and a reason a person can act on."""
    return _OUTCOME_FAILURES.get(outcome)


def classify_exception(exc: BaseException) -> tuple[Kind, str]:
    """Kind and reason of an exception raised while applying a command."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return Kind.TRANSIENT, "timed out applying the command"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return Kind.TRANSIENT, f"Redis unavailable: {type(exc).__name__}"
    if isinstance(exc, (ConnectionError, OSError)):
        return Kind.TRANSIENT, f"database unreachable: {type(exc).__name__}: {exc}"
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return Kind.TRANSIENT, "database connection lost"
        state = _sqlstate(exc)
        if state in _TRANSIENT_SQLSTATES or (state or "").startswith("08"):
            return Kind.TRANSIENT, f"database error {state}: {_first_line(exc.orig)}"
        if isinstance(exc.orig, Exception) and _is_interface_error(exc.orig):
            return Kind.TRANSIENT, f"database connection unusable: {_first_line(exc.orig)}"
        return Kind.PERMANENT, f"database refused the command ({state}): {_first_line(exc.orig)}"
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return Kind.TRANSIENT, f"database pool: {type(exc).__name__}"
    if isinstance(exc, asyncpg.InterfaceError):
        return Kind.TRANSIENT, f"database connection unusable: {_first_line(exc)}"
    # An unforeseen error is retried like a transient one, then dead-lettered: never dropped.
    return Kind.TRANSIENT, f"unexpected {type(exc).__name__}: {_first_line(exc)}"


_UNREACHABLE = (ConnectionError, OSError, sa_exc.TimeoutError, sa_exc.DisconnectionError, asyncpg.InterfaceError)
"""Errors that mean PostgreSQL cannot be reached (Redis's connection errors aside)."""


def is_database_unreachable(exc: BaseException) -> bool:
    """Whether the error means PostgreSQL cannot be reached (rather than refusing one command)."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return False
    if isinstance(exc, _UNREACHABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        state = _sqlstate(exc) or ""
        return exc.connection_invalidated or state.startswith(("08", "57P"))
    return False


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _is_interface_error(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return isinstance(cause, (asyncpg.InterfaceError, ConnectionError)) or "InterfaceError" in type(exc).__name__


def _first_line(exc: object) -> str:
    return first_line(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: try n waits between half and all of
    min(max_delay, base_delay * 2**(n-1)) seconds."""

    transient_tries: int
    not_yet_window: float
    base_delay: float
    max_delay: float

    def ceiling(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 30)))

    def delay(self, attempt: int) -> float:
        return self.ceiling(attempt) * random.uniform(0.5, 1.0)

    def waited_at_least(self, attempt: int) -> float:
        """A lower bound of the time since the first attempt when attempt number `attempt` runs."""
        return sum(self.ceiling(n) * 0.5 for n in range(1, attempt))

    def should_retry(self, kind: Kind, attempt: int) -> bool:
        if kind is Kind.PERMANENT:
            return False
        if kind is Kind.TRANSIENT:
            return attempt < self.transient_tries
        # Retry while the time provably waited is under the window; past it, give up.
        return self.waited_at_least(attempt) < self.not_yet_window
