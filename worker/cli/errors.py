"""The one error path every `taskline` command line shares.

A command reads its settings with `load_cli_settings`, and a command that runs a process reads
them inside `settings_errors_exit()`: a bad variable exits 2, naming it. `worker.cli.app` runs
every command through the producer's `run_cli`, which turns an unreachable PostgreSQL or Redis
into two lines and exit 1, with `worker.observe.service_errors.explain` recognising which service
failed. (`taskline worker`, `scheduler` and `web` started through worker/entry.py say the same
without the CLI's imports.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from worker.config.settings import Settings, SettingsError, load_settings

__all__ = ["load_cli_settings", "settings_errors_exit"]


@contextmanager
def settings_errors_exit() -> Iterator[None]:
    """A `SettingsError` inside: its message, naming the bad variable, on stderr, and exit 2."""
    import typer
    from rich.console import Console

    try:
        yield
    except SettingsError as exc:
        Console(stderr=True).print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def load_cli_settings() -> Settings:
    """The settings, or exit 2 with the message naming the bad variable (every CLI command)."""
    with settings_errors_exit():
        return load_settings()
