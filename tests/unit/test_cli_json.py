"""Every command that prints data takes --json: a new command without it fails here unless it is
one of the few that print no data (the long-running processes) or print a format of their own."""

from __future__ import annotations

from typing import Any

import typer

from worker.cli.app import app

NO_DATA = {"worker", "scheduler", "relay", "web"}
"""Long-running processes: they log, they print no data."""
OWN_FORMAT = {"metrics": "the Prometheus text format", "schema": "a JSON Schema, JSON already"}


def commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf command of a (typer's) click group, named as typed: `dead-letters list`."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found |= commands(command, f"{prefix}{name} ")
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_every_command_that_prints_data_takes_json():
    """Each `taskline` command (and `taskline send …`) has a --json option, but those listed above."""
    every = commands(typer.main.get_command(app))
    assert {"status", "trace", "dead-letters list", "send stream", "demo", "migrate"} <= set(every)
    missing = [
        name
        for name, command in every.items()
        if name not in NO_DATA | set(OWN_FORMAT) and not any("--json" in p.opts for p in command.params)
    ]
    assert missing == []
