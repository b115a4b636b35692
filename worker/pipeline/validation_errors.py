"""What is wrong with a job that breaks the contract, in the command's own terms.

Pydantic locates a problem in the envelope's models (`a.0.issued_at`, `a.0.3.create_task.command.title`);
a dead letter's reason names it the way a producer wrote it (`command.issued_at`,
`commands[3].title`), one problem after another, without the decoder's internal model names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from pydantic import ValidationError
from taskline_producer.contract import BULK_JOB, COMMAND_JOBS

__all__ = ["describe_errors"]

_FUNCTION_SHOWN_CHARS: Final = 80
_INTERNAL_NAME: Final = re.compile(r" or instance of _\w+")


def _dotted(root: str, path: Sequence[str | int]) -> str:
    return root + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _place(loc: Sequence[str | int], bulk: bool) -> str:
    """Where a problem is, in the command's own terms: `command.issued_at` in a command job,
    `commands[3].title` in an apply_commands job; the envelope's own members (f, a, k, t, et)
    by their names."""
    if not loc:
        return ""
    head, *rest = loc
    if head != "a" or not rest or rest[0] != 0:  # the envelope's own members keep their names
        return _dotted(str(head), rest)
    rest = rest[1:]
    if not bulk:
        return _dotted("command", rest)
    if not rest:
        return "commands"
    index, *item = rest
    if item and item[0] in COMMAND_JOBS:  # the discriminator's tag
        item = item[1:]
    if item[:1] == ["command"] and len(item) > 1:
        item = item[1:]
    return _dotted(f"commands[{index}]", item)


def describe_errors(error: ValidationError, drop: int = 0, *, bulk: bool = False, root: str | None = None) -> str:
    """One line per problem: where it is, named as the command's fields (or under `root`, for
    one item of a bulk job), and what is wrong with it."""
    parts = []
    for item in error.errors(include_url=False):
        loc = item["loc"][drop:]
        where = _dotted(root, loc) if root is not None else _place(loc, bulk)
        message = _INTERNAL_NAME.sub("", item["msg"].removeprefix("Value error, "))
        if item["type"] == "union_tag_invalid":
            function = str(item["input"].get("f"))
            shown = function if len(function) <= _FUNCTION_SHOWN_CHARS else function[:_FUNCTION_SHOWN_CHARS] + "…"
            message = (
                f"function {shown!r} ({len(function)} characters) is not a taskline command; the queue runs only "
                if len(function) > _FUNCTION_SHOWN_CHARS
                else f"function {shown!r} is not a taskline command; the queue runs only "
            ) + ", ".join(sorted([*COMMAND_JOBS, BULK_JOB]))
            where = ""
        elif item["type"] == "missing" and tuple(loc) == ("a", 0):
            where, message = "a", "the job has no argument; it must have exactly one, the command"
        elif item["type"] == "union_tag_not_found":
            message = 'the job has no "f" (function name) member'
            where = ""
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
