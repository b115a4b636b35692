"""Job options: the envelope's `k`, where a job says which contract version it was written to
and whether its outcomes are to be recorded (docs/contract.md, "Compatibility and contract
versions").

Version 1 is the contract of the previous release, whose `k` is empty; version 2 adds
`outcome_ttl`; version 3 adds `sig`, the job's signature, which the decoder has verified before
these options are read (worker/pipeline/signatures.py); version 4 adds `traceparent` and
`tracestate`, the producer's W3C trace context, carried as text: only a worker that traces reads
them (worker/observe/tracing.py), and a value it cannot read starts a new trace, never a dead
letter (the effects never depend on it). Version 4 is accepted for jobs already written so;
producers now write the trace context beside the job instead (keys.trace_key), leaving the job at
the version it otherwise needs, so that workers that do not know tracing run it. This code knows versions up to
`taskline_producer.contract.CONTRACT_VERSION`; a worker applies versions up to its
`TASKLINE_CONTRACT_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from taskline_producer.contract import (
    CONTRACT_VERSION,
    OUTCOME_TTL_MAX_S,
    OUTCOME_VERSION,
    SIGNATURE_VERSION,
    TRACE_CONTEXT_VERSION,
    TRACEPARENT_MAX_CHARS,
    TRACESTATE_MAX_CHARS,
)

from worker.text import json_object

__all__ = [
    "NO_OPTIONS",
    "JobOptions",
    "contract_too_new",
    "job_options_of",
    "outcome_asked_by",
    "too_new_in",
]

_OPTION_NAMES: Final = ("contract", "outcome_ttl", "sig", "traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The envelope's `k`: the contract version the job was written to, and how long its
    outcomes are to be kept in Redis (None: not recorded)."""

    contract: int = 1
    outcome_ttl: int | None = None
    traceparent: str | None = None
    """The producer's W3C trace context (contract 4), as sent; read only by a worker that traces."""
    tracestate: str | None = None

    def as_k(self) -> dict[str, Any]:
        """The `k` of a job re-enqueued with the same options (a bulk item retried on its own),
        before it is signed again (a signature covers one job): it stays in its producer's trace."""
        k: dict[str, Any] = {"contract": self.contract} if self.contract > 1 else {}
        if self.outcome_ttl is not None:
            k["outcome_ttl"] = self.outcome_ttl
        if self.traceparent is not None:
            k["traceparent"] = self.traceparent
            if self.tracestate is not None:
                k["tracestate"] = self.tracestate
        return k


NO_OPTIONS: Final = JobOptions()
"""The options of a job whose `k` is empty (contract version 1): shared, nothing allocated."""


def contract_too_new(version: int, accepted: int) -> str:
    """The dead-letter reason for a job written to a contract version the worker does not accept."""
    return (
        f"contract version {version} is newer than this worker accepts (1..{accepted}): upgrade the"
        " workers, then replay this dead letter (taskline dead-letters replay <job id>)"
    )


def job_options_of(k: dict[str, Any]) -> JobOptions | str:
    """The job options in `k`, or the reason they break the contract."""
    if not k:
        return NO_OPTIONS
    contract = k.get("contract", 1)
    if type(contract) is not int or contract < 1:
        return 'k: "contract" must be a whole number from 1: the contract version the job was written to'
    if contract > CONTRACT_VERSION:
        return contract_too_new(contract, CONTRACT_VERSION)
    unknown = sorted(name for name in k if name not in _OPTION_NAMES)
    if unknown:
        return (
            f"k: {unknown[0]!r} is not a taskline job option; contract version {contract} knows"
            f" {', '.join(_OPTION_NAMES)} (send other data inside the command)"
        )
    if "sig" in k and contract < SIGNATURE_VERSION:
        return f'k: "sig" is new in contract version {SIGNATURE_VERSION}: the job must carry "contract": 3'
    trace = _trace_context(k, contract)
    if isinstance(trace, str):
        return trace
    if "outcome_ttl" not in k:
        return JobOptions(contract, None, *trace)
    ttl = k["outcome_ttl"]
    if type(ttl) is not int or not 0 < ttl <= OUTCOME_TTL_MAX_S:
        return f'k: "outcome_ttl" must be a whole number of seconds from 1 to {OUTCOME_TTL_MAX_S}'
    if contract < OUTCOME_VERSION:
        return f'k: "outcome_ttl" is new in contract version {OUTCOME_VERSION}: the job must carry "contract": 2'
    return JobOptions(contract, ttl, *trace)


def _trace_context(k: dict[str, Any], contract: int) -> tuple[str | None, str | None] | str:
    """(traceparent, tracestate) of `k`, as text (not parsed here), or why they break the contract."""
    parent, state = k.get("traceparent"), k.get("tracestate")
    if parent is None and state is None:
        return None, None
    if contract < TRACE_CONTEXT_VERSION:
        return (
            f'k: "traceparent" and "tracestate" are new in contract version {TRACE_CONTEXT_VERSION}:'
            f' the job must carry "contract": {TRACE_CONTEXT_VERSION}'
        )
    if type(parent) is not str or not 0 < len(parent) <= TRACEPARENT_MAX_CHARS:
        return (
            f'k: "traceparent" must be a string of 1 to {TRACEPARENT_MAX_CHARS} characters (a W3C'
            ' traceparent), and "tracestate" needs it'
        )
    if state is not None and (type(state) is not str or len(state) > TRACESTATE_MAX_CHARS):
        return f'k: "tracestate" must be a string of at most {TRACESTATE_MAX_CHARS} characters'
    return parent, state


def too_new_in(raw: bytes) -> str | None:
    """The too-new reason when the job declares a contract version above this code's, whatever
    else it holds (its command may follow rules this code does not know)."""
    value = json_object(raw)
    k = value.get("k") if value is not None else None
    contract = k.get("contract") if isinstance(k, dict) else None
    if type(contract) is int and contract > CONTRACT_VERSION:
        return contract_too_new(contract, CONTRACT_VERSION)
    return None


def outcome_asked_by(raw: bytes) -> tuple[str, int] | tuple[()]:
    """(command id, outcome_ttl) of a refused command job whose `k` is valid and asks for
    outcomes and whose command has a UUID command_id; () otherwise. Read only on the refusal path."""
    value = json_object(raw)
    if value is None:
        return ()
    k = value.get("k")
    options = job_options_of(k) if isinstance(k, dict) else None
    if not isinstance(options, JobOptions) or options.outcome_ttl is None:
        return ()
    arguments = value.get("a")
    command = arguments[0] if isinstance(arguments, list) and len(arguments) == 1 else None
    command_id = command.get("command_id") if isinstance(command, dict) else None
    try:
        return str(UUID(command_id)), options.outcome_ttl
    except (TypeError, ValueError, AttributeError):
        return ()
