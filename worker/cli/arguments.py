"""How the command lines read the values they are given (ages such as `--older-than 30d`)."""

from __future__ import annotations

from datetime import timedelta

import typer

from worker.config.durations import parse_duration

__all__ = ["parse_age"]


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '15m', '90s' (or plain seconds) → timedelta; a bad value is the user's error."""
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an age; use a number and a unit: 30d, 12h, 15m, 90s") from None
