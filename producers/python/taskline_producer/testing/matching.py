"""Matching sent commands against what a test expects, and describing them when they differ.

A test names fields as the contract does (`user_id`, `title`, ...). Values match when equal, with
the spellings a test is likely to write accepted: a UUID as text in any case, `issued_at` as an
RFC 3339 string, a callable as a predicate, `unittest.mock.ANY`, and `ABSENT` for an
update_task member left out (absent and null differ there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from taskline_producer.contract import COMMAND_MODELS, Command, UpdateTask
from taskline_producer.testing.inspection import SentJob

__all__ = ["ABSENT", "SentCommand", "check_field_names", "describe", "differences"]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
"""Matches a member the command leaves out (an update_task's `title` or `description`)."""

_DATETIME: Final = TypeAdapter(datetime)
_ALL_FIELDS: Final = frozenset(name for model in COMMAND_MODELS.values() for name in model.model_fields)


@dataclass(frozen=True, slots=True)
class SentCommand:
    """One command that was sent: on its own job, or as an item of an apply_commands job."""

    command: Command
    job: SentJob

    @property
    def function(self) -> str:
        return self.command.function

    @property
    def command_id(self) -> UUID:
        return self.command.command_id

    @property
    def task_id(self) -> UUID:
        return self.command.task_id

    @property
    def signed_by(self) -> str | None:
        return self.job.signed_by

    @property
    def outcome_ttl(self) -> int | None:
        return self.job.outcome_ttl

    @property
    def in_bulk(self) -> bool:
        """Sent as an item of an apply_commands job (`send_bulk`)."""
        return self.job.function != self.command.function

    def fields(self) -> dict[str, Any]:
        """The command's members as sent (JSON values; a left-out update member is not there)."""
        fields: dict[str, Any] = self.command.model_dump(mode="json", exclude_unset=True)
        return fields


def check_field_names(function: str | None, fields: Mapping[str, Any]) -> None:
    """A misspelt field would match nothing and make `assert_not_sent` pass: refuse it."""
    known = _ALL_FIELDS if function is None else frozenset(COMMAND_MODELS[function].model_fields)
    unknown = sorted(set(fields) - known)
    if unknown:
        where = "a command" if function is None else function
        raise TypeError(f"{unknown[0]!r} is not a member of {where}; its members are {', '.join(sorted(known))}")


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, UUID) and isinstance(expected, str):
        try:
            return actual == UUID(expected)
        except ValueError:
            return False
    if isinstance(actual, datetime) and isinstance(expected, str):
        try:
            return bool(actual == _DATETIME.validate_python(expected))  # RFC 3339 as the contract reads it
        except ValidationError:
            return False
    if callable(expected) and not isinstance(expected, type):
        return bool(expected(actual))
    return bool(actual == expected)


def differences(sent: SentCommand, fields: Mapping[str, Any]) -> list[str]:
    """The names of the expected fields this command does not match."""
    command = sent.command
    differ = []
    for name, expected in fields.items():
        if name not in type(command).model_fields:
            differ.append(name)
            continue
        given = name in command.model_fields_set
        if expected is ABSENT:
            matches = not given
        elif not given and isinstance(command, UpdateTask):
            matches = False  # an update that leaves a member out does not set it, not even to null
        else:
            matches = _same(getattr(command, name), expected)
        if not matches:
            differ.append(name)
    return differ


def describe(sent: SentCommand, differing: list[str] | None = None) -> str:
    """One line: the function, the decoded command (never the raw, signed bytes), the job."""
    members = ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in sent.fields().items())
    notes = []
    if sent.in_bulk:
        notes.append(f"in apply_commands job {sent.job.job_id}")
    if sent.signed_by:
        notes.append(f"signed by {sent.signed_by!r}")
    if sent.outcome_ttl:
        notes.append(f"outcome_ttl={sent.outcome_ttl}")
    if not sent.job.queued:
        notes.append("refused by Redis as a duplicate")
    if differing:
        notes.append("differs in " + ", ".join(differing))
    return f"{sent.function}({members})" + (f"  [{'; '.join(notes)}]" if notes else "")
