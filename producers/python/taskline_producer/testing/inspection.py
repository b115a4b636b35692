"""What a worker would make of a job's bytes: its commands, decoded, or why it would refuse it.

`inspect_job` applies the worker's rules that depend on the job alone, with the contract's own
models (taskline_producer.contract, which the worker's decoder uses too): the size limits, the
envelope, the job options a worker knows (`contract`, `outcome_ttl`, `sig`), the command or every
item of an apply_commands job, the signature under the producer's key, and how far ahead of now
`issued_at` may lie. It does not ask a database (whether the task or user exists) and does not
know the workers' keys' scopes or `TASKLINE_REQUIRE_SIGNATURES`.

Members this code does not know, in the envelope or in `k`, are kept in `SentJob.envelope` and not
judged: they may be newer than this code (the workers decide about them).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from taskline_producer.contract import (
    BULK_JOB,
    COMMAND_MODELS,
    CONTRACT_VERSION,
    DEFAULT_MAX_BULK_COMMANDS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    OUTCOME_TTL_MAX_S,
    OUTCOME_VERSION,
    SIGNATURE_VERSION,
    Command,
    command_from_json,
)
from taskline_producer.signing import KEY_ID_PATTERN, MAC_PLACEHOLDER, SIGNATURE_MARKER, SigningKey, job_mac

__all__ = [
    "DEFAULT_FUTURE_TOLERANCE_S",
    "DEFAULT_MAX_BULK_PAYLOAD_BYTES",
    "SentJob",
    "WouldBeRefused",
    "inspect_job",
]

DEFAULT_MAX_BULK_PAYLOAD_BYTES: Final = 1024 * 1024
"""The workers' default TASKLINE_MAX_BULK_PAYLOAD_BYTES."""
DEFAULT_FUTURE_TOLERANCE_S: Final = 3600
"""The workers' default TASKLINE_FUTURE_TOLERANCE: how far ahead `issued_at` may lie."""

_SIGNATURE: Final = re.compile(rb'"sig":\{"kid":"(' + KEY_ID_PATTERN.encode() + rb')","mac":"([0-9a-f]{64})"\}')
_ENVELOPE_MEMBERS: Final = ("f", "a", "k", "t", "et")


class WouldBeRefused(AssertionError):
    """A worker would dead-letter this job; `reason` says why, `field` names the member at fault
    (None when it is the job as a whole), `raw` is the job's bytes."""

    def __init__(self, reason: str, raw: bytes, field: str | None = None) -> None:
        super().__init__(
            f"a taskline worker would dead-letter this job: {reason}. Fix the command before it is sent"
            " (the real producer would send it and a worker would refuse it)."
        )
        self.reason = reason
        self.raw = raw
        self.field = field


@dataclass(frozen=True, slots=True)
class SentJob:
    """One job as a worker would read it: its function, its commands decoded and its options."""

    job_id: str
    function: str
    commands: tuple[Command, ...]
    raw: bytes = field(repr=False)
    """Exactly the bytes that would be in Redis under `arq:job:<job_id>`."""
    envelope: Mapping[str, Any] = field(repr=False)
    """The job's JSON, every member (new ones included)."""
    queue: str
    queued: bool
    """False: Redis would have refused it as a duplicate of a job it holds (same job id)."""
    signed_by: str | None = None
    """The key id whose signature was verified (None: unsigned)."""

    @property
    def options(self) -> Mapping[str, Any]:
        """The envelope's `k` (contract version, outcome_ttl, sig, and any newer option)."""
        k: Mapping[str, Any] = self.envelope.get("k", {})
        return k

    @property
    def outcome_ttl(self) -> int | None:
        ttl = self.options.get("outcome_ttl")
        return ttl if isinstance(ttl, int) else None

    @property
    def contract(self) -> int:
        version = self.options.get("contract", 1)
        return version if isinstance(version, int) else 1


def _first_field(exc: ValidationError) -> str:
    """The member the first error names; an update's own rules name no member in their location."""
    error = exc.errors()[0]
    if error["loc"]:
        return str(error["loc"][0])
    return "title" if "title cannot be null" in error["msg"] else "title or description"


def _refusal_text(exc: ValidationError, function: str) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or function
        parts.append(f"{where}: {error['msg']}")
    return f"{function}: " + "; ".join(parts)


def _check_signature(raw: bytes, key: SigningKey | None) -> str | None:
    """The signing key id after checking the MAC; WouldBeRefused when it does not verify."""
    at = raw.find(SIGNATURE_MARKER)
    if at < 0:
        return None
    found = _SIGNATURE.match(raw, at)
    if found is None or raw.count(SIGNATURE_MARKER) != 1:
        raise WouldBeRefused('bad signature: k.sig must be written once as "sig":{"kid":…,"mac":…}', raw, "k")
    key_id = found.group(1).decode()
    if key is None or key.key_id != key_id:
        raise WouldBeRefused(f"unknown key: the job is signed with {key_id!r}, not this producer's key", raw, "k")
    zeroed = raw[: found.start(2)] + MAC_PLACEHOLDER.encode() + raw[found.end(2) :]
    if not hmac.compare_digest(job_mac(key.secret, zeroed), found.group(2).decode()):
        raise WouldBeRefused(f"bad signature: the MAC does not match key {key_id!r}", raw, "k")
    return key_id


def _check_options(k: Any, raw: bytes) -> None:
    if not isinstance(k, dict):
        raise WouldBeRefused('"k" must be an object', raw, "k")
    contract = k.get("contract", 1)
    if type(contract) is not int or not 1 <= contract <= CONTRACT_VERSION:
        raise WouldBeRefused(f'k: "contract" must be a whole number from 1 to {CONTRACT_VERSION}', raw, "k")
    if "sig" in k and contract < SIGNATURE_VERSION:
        raise WouldBeRefused(f'k: "sig" needs "contract": {SIGNATURE_VERSION}', raw, "k")
    if "outcome_ttl" in k:
        ttl = k["outcome_ttl"]
        if type(ttl) is not int or not 0 < ttl <= OUTCOME_TTL_MAX_S or contract < OUTCOME_VERSION:
            raise WouldBeRefused(
                f'k: "outcome_ttl" must be 1 to {OUTCOME_TTL_MAX_S} seconds with "contract" at least {OUTCOME_VERSION}',
                raw,
                "k",
            )


def _command(function: str, argument: Any, raw: bytes, where: str = "") -> Command:
    # Validated from JSON text, as the worker validates it (strict JSON types, no coercion).
    text = json.dumps(argument, ensure_ascii=True, separators=(",", ":"))
    try:
        return command_from_json(function, text)
    except ValidationError as exc:
        raise WouldBeRefused(where + _refusal_text(exc, function), raw, _first_field(exc)) from None


def _bulk_commands(argument: Any, raw: bytes) -> tuple[Command, ...]:
    if not isinstance(argument, list) or not 0 < len(argument) <= DEFAULT_MAX_BULK_COMMANDS:
        raise WouldBeRefused(f"apply_commands takes a list of 1 to {DEFAULT_MAX_BULK_COMMANDS} items", raw, "a")
    commands = []
    for index, item in enumerate(argument):
        where = f"commands[{index}]: "
        if not isinstance(item, dict) or set(item) != {"function", "command"} or item["function"] not in COMMAND_MODELS:
            raise WouldBeRefused(where + 'an item is {"function": <command job>, "command": {…}}', raw, "function")
        commands.append(_command(item["function"], item["command"], raw, where))
    return tuple(commands)


def inspect_job(
    raw: bytes,
    *,
    job_id: str,
    queue: str,
    queued: bool = True,
    signing_key: SigningKey | None = None,
    now: datetime | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_bulk_payload_bytes: int = DEFAULT_MAX_BULK_PAYLOAD_BYTES,
    future_tolerance_s: float | None = DEFAULT_FUTURE_TOLERANCE_S,
) -> SentJob:
    """The job as a worker would read it; raises `WouldBeRefused` when a worker would refuse it.

    `future_tolerance_s`: how far ahead of `now` (default: the clock) `issued_at` may lie; None
    leaves that rule out (the worker applies it when it runs the job, not when it decodes it)."""
    limit = max_bulk_payload_bytes if raw.startswith(b'{"f":"' + BULK_JOB.encode() + b'"') else max_payload_bytes
    if len(raw) > limit:
        raise WouldBeRefused(f"the job is {len(raw)} bytes; the workers' limit is {limit}", raw)
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise WouldBeRefused(f"the job is not JSON: {exc}", raw) from None
    if not isinstance(envelope, dict) or any(name not in envelope for name in _ENVELOPE_MEMBERS):
        raise WouldBeRefused('a job is a JSON object with "f", "a", "k", "t" and "et"', raw)
    signed_by = _check_signature(raw, signing_key)
    _check_options(envelope["k"], raw)
    function, arguments = envelope["f"], envelope["a"]
    if not isinstance(arguments, list) or len(arguments) != 1:
        raise WouldBeRefused('"a" must hold exactly one argument', raw, "a")
    if function == BULK_JOB:
        commands = _bulk_commands(arguments[0], raw)
    elif function in COMMAND_MODELS:
        commands = (_command(function, arguments[0], raw),)
    else:
        raise WouldBeRefused(f"{function!r} is not a taskline job function", raw, "f")
    horizon = None if future_tolerance_s is None else (now or datetime.now(UTC)) + timedelta(seconds=future_tolerance_s)
    for command in commands:
        if horizon is not None and command.issued_at > horizon:
            raise WouldBeRefused(
                f"{command.function}: issued_at {command.issued_at.isoformat()} is more than"
                f" {future_tolerance_s:g} s ahead of the worker's clock",
                raw,
                "issued_at",
            )
    return SentJob(job_id, function, commands, raw, envelope, queue, queued, signed_by)
