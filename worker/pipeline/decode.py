"""Decode a job as it arrives from Redis, before anything else sees it.

This is arq's `job_deserializer`. It never raises and never unpickles: whatever the bytes are,
it returns an arq job dict. A job that follows the contract becomes a call of its command
function with a `Delivery`; anything else (oversized, not JSON, a pickle, a malformed envelope,
an unknown function, an invalid command) becomes a call of the internal `REJECT_JOB` function
with a `Rejected`, which dead-letters it. arq itself would log and drop such jobs silently.

A signed job (contract version 3) is verified first, before its command is parsed
(`worker.pipeline.signatures`): a refused signature makes it a `Rejected` naming the key id, and
after validation each command is checked against its key's scope. The key that signed a job
travels with it (`signed_by`) into its dead letter and its processed command.

The envelope's `k` holds taskline's job options (`worker.pipeline.job_options`), carried on the
`Delivery`. A contract version newer than this code knows is rejected here, before its command
is read (it may use what this code cannot parse); a version this code knows but
`TASKLINE_CONTRACT_VERSION` holds the worker below is dead-lettered by the job function, which
has the settings (`worker.pipeline.jobs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final, Literal, Union
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from taskline_producer.contract import (
    BULK_JOB,
    COMMAND_JOBS,
    COMMAND_MODELS,
    DEFAULT_MAX_BULK_COMMANDS,
    Command,
    CompleteTask,
    CreateTask,
    UpdateTask,
)
from taskline_producer.wire import envelope, epoch_ms, wire_argument

from worker.pipeline.job_options import NO_OPTIONS, JobOptions, job_options_of, outcome_asked_by, too_new_in
from worker.pipeline.signatures import Refusal, Signer, Verifier
from worker.pipeline.validation_errors import describe_errors
from worker.text import json_object

__all__ = ["BULK_PREFIX", "REJECT_JOB", "BulkDelivery", "Decoder", "Delivery", "Rejected"]

REJECT_JOB: Final = "taskline_reject"
"""Internal job function that dead-letters what the decoder refused. Naming it in a job does
nothing more than that: the decoder routes only the command functions to real work."""

MAX_START_TRY: Final = 10_000
"""`t`, the try a job starts at, is at most this (a dead letter records its tries in an int column)."""
MAX_ENQUEUE_TIME_MS: Final = 253_402_300_799_999
"""`et`, the enqueue time in epoch ms, is at most the last millisecond of year 9999."""

BULK_PREFIX: Final = b'{"f":"' + BULK_JOB.encode() + b'"'


@dataclass(frozen=True, slots=True, repr=False)
class Delivery:
    """A job that follows the contract: one validated command, the bytes it came in and its options."""

    raw: bytes
    command: Command
    options: JobOptions = NO_OPTIONS
    signed_by: str | None = None
    """The id of the key that signed the job (verified), None when unsigned."""

    def __repr__(self) -> str:  # arq formats job arguments for its logs: never the payload
        return f"<{self.command.function} {self.command.command_id}>"


@dataclass(frozen=True, slots=True, repr=False)
class Rejected:
    """A job, or one item of a bulk job, that breaks the contract, and why."""

    raw: bytes
    function: str | None
    reason: str
    command_id: str | None = None
    outcome_ttl: int | None = None
    """Set when a refused single-command job asked for outcomes (valid `k`, a UUID command_id):
    its dead letter is then recorded as its outcome, reason included."""
    signed_by: str | None = None
    """The key id the job was signed with, or claims to be (a refused signature, an out-of-scope command)."""

    def __repr__(self) -> str:
        return f"<rejected {len(self.raw)} bytes>"


@dataclass(frozen=True, slots=True, repr=False)
class BulkDelivery:
    """An apply_commands job: its valid commands and its rejected items, each with its index."""

    raw: bytes
    commands: list[tuple[int, Command]]
    rejected: list[tuple[int, Rejected]]
    options: JobOptions = NO_OPTIONS
    signed_by: str | None = None

    def __repr__(self) -> str:
        return f"<apply_commands {len(self.commands) + len(self.rejected)} commands>"


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    k: dict[str, Any]  # the job options: read by job_options_of
    t: Annotated[int, Field(ge=1, le=MAX_START_TRY)] | None
    et: Annotated[int, Field(ge=0, le=MAX_ENQUEUE_TIME_MS)]


class _CreateJob(_Envelope):
    f: Literal["create_task"]
    a: tuple[CreateTask]


class _UpdateJob(_Envelope):
    f: Literal["update_task"]
    a: tuple[UpdateTask]


class _CompleteJob(_Envelope):
    f: Literal["complete_task"]
    a: tuple[CompleteTask]


class _LaxBulkJob(_Envelope):
    """An apply_commands envelope whose items are checked one by one (when one is invalid)."""

    f: Literal["apply_commands"]
    a: tuple[Annotated[list[Any], Field(min_length=1, max_length=DEFAULT_MAX_BULK_COMMANDS)]]


class _BulkItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    function: Literal["create_task", "update_task", "complete_task"]
    command: dict[str, Any]


class _CreateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["create_task"]
    command: CreateTask


class _UpdateItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["update_task"]
    command: UpdateTask


class _CompleteItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    function: Literal["complete_task"]
    command: CompleteTask


_Item = Annotated[_CreateItem | _UpdateItem | _CompleteItem, Field(discriminator="function")]


class _BulkJob(_Envelope):
    """An apply_commands envelope whose items are all valid: validated in one pass."""

    f: Literal["apply_commands"]
    a: tuple[Annotated[list[_Item], Field(min_length=1, max_length=DEFAULT_MAX_BULK_COMMANDS)]]


_LAX_BULK_JOB: Final = TypeAdapter(_LaxBulkJob)

_JOB: Final = TypeAdapter[Union[_CreateJob, _UpdateJob, _CompleteJob, _BulkJob]](
    Annotated[_CreateJob | _UpdateJob | _CompleteJob | _BulkJob, Field(discriminator="f")]
)


def _function_of(raw: bytes) -> str | None:
    value = json_object(raw)
    if value is not None and value.get("f") in COMMAND_JOBS | {BULK_JOB}:
        return str(value["f"])
    return None


def _canonical_uuid(value: Any) -> str | None:
    """A bulk item's command_id, when it is a UUID: its dead letter is filed under it. Anything
    else (a blank, an arbitrary string) is not an id to file under; the job id and index are."""
    try:
        return str(UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


class Decoder:
    """arq's job_deserializer: bytes in, an arq job dict out, for every possible input."""

    def __init__(self, max_payload_bytes: int, max_bulk_payload_bytes: int, verifier: Verifier | None = None) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_bulk_payload_bytes = max_bulk_payload_bytes
        self.verifier = verifier if verifier is not None and verifier.active else None

    def __call__(self, raw: bytes) -> dict[str, Any]:
        try:
            return self._decode(raw)
        except Exception as exc:  # the decoder must never fail: arq would drop the job silently
            return self._reject(raw, None, f"could not decode the job: {type(exc).__name__}: {exc}")

    def _decode(self, raw: bytes) -> dict[str, Any]:
        size = len(raw)
        if size > self.max_payload_bytes and not (raw.startswith(BULK_PREFIX) and size <= self.max_bulk_payload_bytes):
            return self._too_large(raw)
        if raw[:1] == b"\x80":
            return self._reject(
                raw, None, "the job is a Python pickle, not JSON; taskline never unpickles: send JSON jobs"
            )
        signer = None
        if self.verifier is not None:
            verdict = self.verifier.verify(raw)
            if isinstance(verdict, Refusal):
                return self._reject(raw, _function_of(raw), verdict.reason, signed_by=verdict.key_id)
            signer = verdict
        try:
            job = _JOB.validate_json(raw)
        except ValidationError as exc:
            function = _function_of(raw)
            too_new = too_new_in(raw)
            if too_new:
                return self._reject(raw, function, too_new)
            if function == BULK_JOB:
                return self._lax_bulk(raw, exc, signer)
            return self._reject(
                raw, function, describe_errors(exc, drop=1, bulk=function == BULK_JOB), *outcome_asked_by(raw)
            )
        options = job_options_of(job.k)
        if isinstance(options, str):
            return self._reject(raw, job.f, options)
        signed_by = signer.key_id if signer is not None else None
        if isinstance(job, _BulkJob):
            commands: list[tuple[int, Command]] = [(index, item.command) for index, item in enumerate(job.a[0])]
            argument: Delivery | BulkDelivery = self._in_scope(BulkDelivery(raw, commands, [], options), signer)
        elif size > self.max_payload_bytes:  # the bulk prefix, but a repeated "f" made it a command job
            return self._too_large(raw)
        else:
            command = job.a[0]
            out_of_scope = Verifier.scope_refusal(signer, command) if signer is not None else None
            if out_of_scope:
                return self._reject(raw, job.f, out_of_scope, *outcome_asked_by(raw), signed_by=signed_by)
            argument = Delivery(raw, command, options, signed_by)
        return {"f": job.f, "a": (argument,), "k": {}, "t": job.t, "et": job.et}

    def _too_large(self, raw: bytes) -> dict[str, Any]:
        return self._reject(
            raw,
            None,
            f"the job is {len(raw)} bytes; the limit is {self.max_payload_bytes} bytes for a command job"
            f" and {self.max_bulk_payload_bytes} for an apply_commands job (whose JSON must start"
            ' with {"f":"apply_commands"). Split it into smaller jobs.',
        )

    def _in_scope(self, bulk: BulkDelivery, signer: Signer | None) -> BulkDelivery:
        """The bulk job with the signer's name on it, and its commands outside the signing key's
        scope moved to its rejected items (each kept as the single job it would have been)."""
        if signer is None:
            return bulk
        key = self.verifier.signing_key(signer.key_id) if self.verifier is not None else None
        commands: list[tuple[int, Command]] = []
        rejected = [(index, replace(item, signed_by=signer.key_id)) for index, item in bulk.rejected]
        for index, command in bulk.commands:
            reason = Verifier.scope_refusal(signer, command)
            if reason is None:
                commands.append((index, command))
                continue
            single = envelope(command.function, wire_argument(command), epoch_ms(), bulk.options.as_k(), key)
            item = Rejected(single, command.function, reason, str(command.command_id), None, signer.key_id)
            rejected.append((index, item))
        rejected.sort(key=lambda item: item[0])
        return BulkDelivery(bulk.raw, commands, rejected, bulk.options, signer.key_id)

    def _lax_bulk(self, raw: bytes, strict_error: ValidationError, signer: Signer | None) -> dict[str, Any]:
        """Some item of an apply_commands job is invalid (or its envelope is): keep the valid
        items and reject the others one by one."""
        try:
            job = _LAX_BULK_JOB.validate_json(raw)
        except ValidationError:
            return self._reject(raw, BULK_JOB, describe_errors(strict_error, drop=1, bulk=True))
        options = job_options_of(job.k)
        if isinstance(options, str):
            return self._reject(raw, BULK_JOB, options)
        bulk = self._in_scope(self._bulk(raw, job.a[0], options), signer)
        return {"f": job.f, "a": (bulk,), "k": {}, "t": job.t, "et": job.et}

    @staticmethod
    def _bulk(raw: bytes, items: list[Any], options: JobOptions) -> BulkDelivery:
        commands: list[tuple[int, Command]] = []
        rejected: list[tuple[int, Rejected]] = []
        for index, item in enumerate(items):
            function = item.get("function") if isinstance(item, dict) else None
            function = function if function in COMMAND_JOBS else None
            command_id = None
            if isinstance(item, dict) and isinstance(item.get("command"), dict):
                command_id = _canonical_uuid(item["command"].get("command_id"))
            try:
                tagged = _BulkItem.model_validate(item)
                command = COMMAND_MODELS[tagged.function].model_validate(tagged.command)
            except ValidationError as exc:
                # Kept as the single-command job it would have been, so a replay can enqueue it.
                if function and isinstance(item, dict) and isinstance(item.get("command"), dict):
                    item_raw = envelope(function, item["command"], epoch_ms(), options.as_k())
                else:
                    item_raw = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
                reason = describe_errors(exc, root=f"commands[{index}]")
                rejected.append((index, Rejected(item_raw, function, reason, command_id)))
            else:
                commands.append((index, command))
        return BulkDelivery(raw, commands, rejected, options)

    @staticmethod
    def _reject(
        raw: bytes,
        function: str | None,
        reason: str,
        command_id: str | None = None,
        outcome_ttl: int | None = None,
        *,
        signed_by: str | None = None,
    ) -> dict[str, Any]:
        rejected = Rejected(raw, function, reason, command_id, outcome_ttl, signed_by)
        return {"f": REJECT_JOB, "a": (rejected,), "k": {}, "t": None, "et": 0}
