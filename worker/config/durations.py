"""Durations as people write them in settings and on command lines: 30d, 12h, 15m, 90s, or seconds."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_duration"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'30d', '12h', '15m', '90s', '1w' or a plain number of seconds → seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration; use seconds or a number and a unit: 30d, 12h, 15m, 90s")
    return float(match.group(1)) * _UNITS[match.group(2)]
