"""The one error path every `taskline` command line shares.

Every error a command prints has one shape, on stderr: `error: <what went wrong>`, then an
indented line saying what to do next. `fail` prints it and exits (1 by default, 2 for what the
user typed). A command reads its settings with `load_cli_settings`, and a command that runs a
process reads them inside `settings_errors_exit()`: a bad variable exits 2, naming it.
`worker.cli.app` runs every command through the producer's `run_cli`, which turns an unreachable
PostgreSQL or Redis raised anywhere into the same two lines and exit 1, with
`worker.observe.service_errors.explain` recognising which service failed; a command that prints
what it could read before giving up (`status`) calls `service_problem_exit` instead.
(`taskline worker`, `scheduler` and `web` started through worker/entry.py say the same without
the CLI's imports.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from taskline_producer.cli_errors import EXIT_UNAVAILABLE, ServiceProblem

from worker.config.settings import Settings, SettingsError, load_settings

__all__ = ["fail", "load_cli_settings", "service_problem_exit", "settings_errors_exit"]


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print `error: message` (and `  hint`) on stderr and exit with `code`."""
    import typer

    print(f"error: {message}" + (f"\n  {hint}" if hint else ""), file=sys.stderr)
    raise typer.Exit(code)


def service_problem_exit(problem: ServiceProblem) -> NoReturn:
    """A service that could not be used, in the shared two lines, and exit 1."""
    import typer

    print(problem.lines(), file=sys.stderr)
    raise typer.Exit(EXIT_UNAVAILABLE)


@contextmanager
def settings_errors_exit() -> Iterator[None]:
    """A `SettingsError` inside: its message, naming the bad variable, on stderr, and exit 2."""
    try:
        yield
    except SettingsError as exc:
        fail(f"configuration: {exc}", "Fix that variable in the environment (README: Settings).", code=2)


def load_cli_settings() -> Settings:
    """The settings, or exit 2 with the message naming the bad variable (every CLI command)."""
    with settings_errors_exit():
        return load_settings()
