"""The signing keys a worker knows (`TASKLINE_SIGNING_KEYS`), each with its scope.

The setting holds a JSON object, or the path of a file holding one, keyed by key id:

    {"billing-2026-12": {"secret": "<at least 32 characters>", "functions": ["create_task"],
                         "user_ids": {"min": 1000, "max": 1999}},
     "mobile-1": {"secret": "...", "user_ids": [7, 8, 9]},
     "billing-2026-06": {"secret": "...", "retired": true}}

`functions` (default: all three command functions) and `user_ids` (a list, or an inclusive
`{"min", "max"}` range; default: every user) are the key's scope: a command outside it is
refused. `retired: true` keeps a key's id known so that its jobs are refused with a reason that
says "retired" rather than "unknown". Several keys may be active at once: that is how a producer
rotates its secret without downtime (docs/contract.md, "Key rotation"). Secrets are held as
`SecretStr`, so a printed or logged setting shows `**********`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator
from taskline_producer.contract import COMMAND_JOBS, USER_ID_MAX
from taskline_producer.signing import KEY_ID_PATTERN, MIN_SECRET_CHARS

__all__ = ["KeyConfig", "UserRange", "parse_signing_keys"]

KeyId = Annotated[str, StringConstraints(pattern=f"^{KEY_ID_PATTERN}$")]
_USER_ID = Annotated[int, Field(ge=1, le=USER_ID_MAX, strict=True)]
MAX_LISTED_USERS: Final = 100_000


class UserRange(BaseModel):
    """An inclusive range of user ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: _USER_ID
    max: _USER_ID

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, int) and self.min <= user_id <= self.max

    def describe(self) -> str:
        return f"{self.min}..{self.max}"


class KeyConfig(BaseModel):
    """One key: its secret and its scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr
    functions: frozenset[str] = COMMAND_JOBS
    user_ids: UserRange | frozenset[_USER_ID] | None = None
    retired: bool = False

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        length = len(value.get_secret_value())
        if length < MIN_SECRET_CHARS:
            raise ValueError(
                f"is {length} characters; use at least {MIN_SECRET_CHARS} random characters (openssl rand -hex 32)"
            )
        return value

    @field_validator("functions")
    @classmethod
    def _functions(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - COMMAND_JOBS)
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} is not a command function; a key's functions are some of"
                f" {', '.join(sorted(COMMAND_JOBS))} (an apply_commands job is checked item by item)"
            )
        if not value:
            raise ValueError("is empty: list at least one command function, or leave it out for all")
        return value

    @field_validator("user_ids")
    @classmethod
    def _user_ids(cls, value: UserRange | frozenset[int] | None) -> UserRange | frozenset[int] | None:
        if isinstance(value, UserRange) and value.min > value.max:
            raise ValueError(f"min {value.min} is above max {value.max}")
        if isinstance(value, frozenset) and not 0 < len(value) <= MAX_LISTED_USERS:
            raise ValueError(f"lists 1 to {MAX_LISTED_USERS} user ids (use a range for more)")
        return value

    def secret_bytes(self) -> bytes:
        return self.secret.get_secret_value().encode()

    def allows_user(self, user_id: int) -> bool:
        return self.user_ids is None or user_id in self.user_ids

    def describe_users(self) -> str:
        if self.user_ids is None:
            return "every user"
        if isinstance(self.user_ids, UserRange):
            return f"user ids {self.user_ids.describe()}"
        shown = sorted(self.user_ids)
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        return "user ids " + ", ".join(map(str, shown[:5])) + more


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    keys: dict[KeyId, KeyConfig]


def parse_signing_keys(value: Any) -> dict[str, KeyConfig]:
    """The keys in TASKLINE_SIGNING_KEYS: a JSON object by key id, or the path of a file holding
    one (a value that does not start with `{`). Raises ValueError saying what is wrong."""
    if isinstance(value, dict):
        return _KeyFile.model_validate({"keys": value}).keys
    if not isinstance(value, str):
        raise ValueError("must be a JSON object of keys by key id, or the path of a file holding one")
    text = value.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"names the file {str(path)!r}, which cannot be read ({exc.strerror})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError('must be a JSON object keyed by key id: {"<key id>": {"secret": "..."}, ...}')
    return _KeyFile.model_validate({"keys": raw}).keys
