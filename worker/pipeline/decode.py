"""Decode a job as it arrives from Redis, before anything else sees it.

This is arq's `job_deserializer`. It never raises and never unpickles: whatever the bytes are,
it returns an arq job dict. A job that follows the contract becomes a call of its command
function with a `Delivery`; anything else (oversized, not JSON, a pickle, a malformed envelope,
an unknown function, an invalid command) becomes a call of the internal `REJECT_JOB` function
with a `Rejected`, which dead-letters it. arq itself would log and drop such jobs silently.

What it hands on is in `worker.pipeline.deliveries`; the JSON shapes it validates against are in
`worker.pipeline.job_schemas`.

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
from dataclasses import replace
from typing import Any, Final
from uuid import UUID

from pydantic import ValidationError
from taskline_producer.contract import BULK_JOB, COMMAND_JOBS, COMMAND_MODELS, Command
from taskline_producer.wire import envelope, epoch_ms, wire_argument

from worker.pipeline.deliveries import REJECT_JOB, BulkDelivery, Delivery, Rejected, rejection
from worker.pipeline.job_options import JobOptions, job_options_of, outcome_asked_by, too_new_in
from worker.pipeline.job_schemas import JOB_SCHEMA, LAX_BULK_SCHEMA, BulkItem, BulkJob
from worker.pipeline.signatures import Refusal, Signer, Verifier
from worker.pipeline.validation_errors import describe_errors
from worker.text import json_object

__all__ = ["BULK_PREFIX", "REJECT_JOB", "BulkDelivery", "Decoder", "Delivery", "Rejected"]

BULK_PREFIX: Final = b'{"f":"' + BULK_JOB.encode() + b'"'


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
            return rejection(raw, None, f"could not decode the job: {type(exc).__name__}: {exc}")

    def _decode(self, raw: bytes) -> dict[str, Any]:
        size = len(raw)
        if size > self.max_payload_bytes and not (raw.startswith(BULK_PREFIX) and size <= self.max_bulk_payload_bytes):
            return self._too_large(raw)
        if raw[:1] == b"\x80":
            return rejection(
                raw, None, "the job is a Python pickle, not JSON; taskline never unpickles: send JSON jobs"
            )
        signer = None
        if self.verifier is not None:
            verdict = self.verifier.verify(raw)
            if isinstance(verdict, Refusal):
                return rejection(raw, _function_of(raw), verdict.reason, signed_by=verdict.key_id)
            signer = verdict
        try:
            job = JOB_SCHEMA.validate_json(raw)
        except ValidationError as exc:
            function = _function_of(raw)
            too_new = too_new_in(raw)
            if too_new:
                return rejection(raw, function, too_new)
            if function == BULK_JOB:
                return self._lax_bulk(raw, exc, signer)
            return rejection(
                raw, function, describe_errors(exc, drop=1, bulk=function == BULK_JOB), *outcome_asked_by(raw)
            )
        options = job_options_of(job.k)
        if isinstance(options, str):
            return rejection(raw, job.f, options)
        signed_by = signer.key_id if signer is not None else None
        if isinstance(job, BulkJob):
            commands: list[tuple[int, Command]] = [(index, item.command) for index, item in enumerate(job.a[0])]
            argument: Delivery | BulkDelivery = self._in_scope(BulkDelivery(raw, commands, [], options), signer)
        elif size > self.max_payload_bytes:  # the bulk prefix, but a repeated "f" made it a command job
            return self._too_large(raw)
        else:
            command = job.a[0]
            out_of_scope = Verifier.scope_refusal(signer, command) if signer is not None else None
            if out_of_scope:
                return rejection(raw, job.f, out_of_scope, *outcome_asked_by(raw), signed_by=signed_by)
            argument = Delivery(raw, command, options, signed_by)
        return {"f": job.f, "a": (argument,), "k": {}, "t": job.t, "et": job.et}

    def _too_large(self, raw: bytes) -> dict[str, Any]:
        return rejection(
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
            job = LAX_BULK_SCHEMA.validate_json(raw)
        except ValidationError:
            return rejection(raw, BULK_JOB, describe_errors(strict_error, drop=1, bulk=True))
        options = job_options_of(job.k)
        if isinstance(options, str):
            return rejection(raw, BULK_JOB, options)
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
                tagged = BulkItem.model_validate(item)
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
