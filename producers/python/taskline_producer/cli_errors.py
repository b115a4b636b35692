"""What a command-line tool prints when a service it needs is unreachable or refuses it.

One or two lines on stderr: the service, the setting that points at it (`REDIS_URL`,
`DATABASE_URL`), that URL without its password, the error, and what to try; exit status 1.
The traceback only with `--debug` (anywhere on the command line) or `TASKLINE_LOG_LEVEL=DEBUG`.

Both CLIs go through `run_cli`: `taskline-send` with the Redis explanation below, `taskline`
(worker/cli/errors.py) adding PostgreSQL's. Code that knows exactly which URL it used (the
`--redis-url` of `taskline-send`) raises `ServiceUnavailable` carrying it; anything else is
recognised by the exception's type.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskline_producer.redaction import redact_text, redact_url

__all__ = [
    "DEBUG_FLAG",
    "EXIT_UNAVAILABLE",
    "ServiceProblem",
    "ServiceUnavailable",
    "causes",
    "error_text",
    "redact_url",
    "redis_problem",
    "run_cli",
]

DEBUG_FLAG: Final = "--debug"
EXIT_UNAVAILABLE: Final = 1


@dataclass(frozen=True, slots=True)
class ServiceProblem:
    """A service that could not be used, said the way an operator can act on."""

    service: str
    setting: str
    url: str
    error: str
    hint: str

    def message(self) -> str:
        return f"cannot use {self.service} at {redact_url(self.url)} (from {self.setting}): {self.error}"

    def lines(self) -> str:
        return f"error: {self.message()}\n  {self.hint} (--debug shows the traceback)"


class ServiceUnavailable(Exception):
    """Raised, from the original error, by code that knows which setting and URL it used."""

    def __init__(self, problem: ServiceProblem) -> None:
        super().__init__(problem.message())
        self.problem = problem


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it (__cause__, __context__, the members of groups)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def error_text(exc: BaseException) -> str:
    """`Type: message`, the whole message folded onto one line, URLs in it redacted, cut to 300
    characters."""
    text = redact_text(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def redis_problem(exc: BaseException, url: str, setting: str = "REDIS_URL") -> ServiceProblem | None:
    """The problem, if `exc` (or its cause) is Redis being unreachable or refusing us."""
    for error in causes(exc):
        if isinstance(error, ServiceUnavailable):
            return error.problem
        if isinstance(error, (AuthenticationError, AuthorizationError)) or (
            isinstance(error, ResponseError) and str(error).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))
        ):
            hint = f"Redis refused the credentials or the command: check the user and password in {setting}"
            return ServiceProblem("Redis", setting, url, error_text(error), hint + " (and its ACL rules).")
        if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            hint = (
                f"Is Redis running and reachable there? Check the host, port and database number in {setting}"
                " (rediss:// for TLS; redis+sentinel://sentinel1,sentinel2/<master name>/<db> for Sentinel)."
            )
            return ServiceProblem("Redis", setting, url, error_text(error), hint)
    return None


def _debug_requested() -> bool:
    """`--debug` anywhere on the command line (taken out before the CLI parses it), or DEBUG logs."""
    wanted = DEBUG_FLAG in sys.argv[1:]
    if wanted:
        sys.argv = [arg for arg in sys.argv if arg != DEBUG_FLAG]
    return wanted or os.environ.get("TASKLINE_LOG_LEVEL", "").upper() == "DEBUG"


def run_cli(app: Callable[[], Any], explain: Callable[[BaseException], ServiceProblem | None]) -> None:
    """Run a typer app; an error that `explain` recognises is printed as its problem, and the
    process exits with status 1. Any other error is left to propagate as it would."""
    debug = _debug_requested()
    try:
        app()
    except Exception as exc:
        problem = explain(exc)
        if problem is None:
            raise
        if debug:
            traceback.print_exception(exc)
        print(problem.lines(), file=sys.stderr)
        raise SystemExit(EXIT_UNAVAILABLE) from None
