"""What to say when PostgreSQL or Redis cannot be used: for the command lines, the fleet page and probes
(see taskline_producer.cli_errors for the Redis half, shared with the producer).

`explain` recognises an error from either service, wherever in a command it happened, and says
which setting to check and what to try. A bare `OSError` or `TimeoutError` (how asyncpg reports
a refused or timed-out connection) is PostgreSQL's when its traceback passes through asyncpg or
SQLAlchemy, Redis' when it passes through redis-py.
"""

from __future__ import annotations

import os
import traceback
from typing import Final

import asyncpg
from sqlalchemy import exc as sa_exc
from taskline_producer.cli_errors import ServiceProblem, causes, error_text, redis_problem

__all__ = ["database_problem", "describe", "explain"]

_DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
_UNREACHABLE_HINT: Final = (
    "Is PostgreSQL running and reachable there? Check the host, port and database name in DATABASE_URL."
)


def _setting(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _database_url() -> str:
    return _setting("DATABASE_URL", "TASKLINE_DATABASE_URL", default="(not set)")


def _redis_url() -> str:
    return _setting("REDIS_URL", "TASKLINE_REDIS_URL", default=_DEFAULT_REDIS_URL)


def _passed_through(exc: BaseException, *packages: str) -> bool:
    return any(
        f"{os.sep}{package}{os.sep}" in frame.filename
        for frame in traceback.extract_tb(exc.__traceback__)
        for package in packages
    )


def _postgres_hint(error: BaseException) -> str | None:
    if isinstance(error, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        return "PostgreSQL refused the login: check the user and password in DATABASE_URL (and pg_hba.conf)."
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return "That database does not exist: create it (createdb), or fix its name in DATABASE_URL."
    if isinstance(error, asyncpg.UndefinedTableError):
        return "The database has no taskline tables yet: run `taskline migrate` first."
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return "The role in DATABASE_URL lacks a right this command needs (the README's Security section lists them)."
    if isinstance(error, (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)):
        return "PostgreSQL is starting, stopping or full: try again shortly, or check max_connections."
    if isinstance(error, asyncpg.PostgresConnectionError):
        return _UNREACHABLE_HINT
    if isinstance(error, (asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.InternalClientError)):
        # the server shutting down cuts every session; a query on a session it cut mid-way fails
        # inside asyncpg ("cannot switch to state ..."): both are the server going away
        return _UNREACHABLE_HINT
    return None


def database_problem(exc: BaseException, url: str | None = None) -> ServiceProblem | None:
    """The problem, if `exc` (or its cause) is PostgreSQL being unreachable or refusing us."""
    url = url or _database_url()
    for error in causes(exc):
        hint = _postgres_hint(error)
        if hint is not None:
            return ServiceProblem("PostgreSQL", "DATABASE_URL", url, error_text(error), hint)
        if isinstance(error, (OSError, TimeoutError)) and _passed_through(error, "asyncpg", "sqlalchemy"):
            return ServiceProblem("PostgreSQL", "DATABASE_URL", url, error_text(error), _UNREACHABLE_HINT)
        if isinstance(error, sa_exc.InterfaceError | asyncpg.InterfaceError):
            return ServiceProblem("PostgreSQL", "DATABASE_URL", url, error_text(error), _UNREACHABLE_HINT)
    return None


def explain(exc: BaseException) -> ServiceProblem | None:
    """What to tell the operator about `exc`, if it is PostgreSQL or Redis failing us."""
    problem = redis_problem(exc, _redis_url())
    if problem is not None:
        return problem
    problem = database_problem(exc)
    if problem is not None:
        return problem
    for error in causes(exc):  # a bare socket error from redis-py's own connect
        if isinstance(error, (OSError, TimeoutError)) and _passed_through(error, "redis"):
            hint = "Is Redis running and reachable there? Check the host, port and database number in REDIS_URL."
            return ServiceProblem("Redis", "REDIS_URL", _redis_url(), error_text(error), hint)
    return None


def describe(exc: BaseException) -> str:
    """One line for a command that reports the failure itself (health, metrics)."""
    problem = explain(exc)
    if problem is None:
        return error_text(exc)
    return f"{problem.message().rstrip('.')}. {problem.hint}"
