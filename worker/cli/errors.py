"""The one error path every `taskline` command line shares.

A command reads its settings with `load_cli_settings` (a bad variable: exit 2, naming it);
`worker.cli.app` runs every command through the producer's `run_cli`, which turns an unreachable
PostgreSQL or Redis into two lines and exit 1, with `worker.observe.service_errors.explain`
recognising which service failed.
"""

from __future__ import annotations

from worker.config.settings import Settings, SettingsError, load_settings

__all__ = ["load_cli_settings"]


def load_cli_settings() -> Settings:
    """The settings, or exit 2 with the message naming the bad variable (every CLI command)."""
    import typer
    from rich.console import Console

    try:
        return load_settings()
    except SettingsError as exc:
        Console(stderr=True).print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
