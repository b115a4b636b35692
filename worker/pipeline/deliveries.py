"""What the decoder hands the job functions: a `Delivery` (one valid command), a `BulkDelivery`
(an apply_commands job's valid commands and refused items) or a `Rejected` (a job, or an item,
that breaks the contract, and why), and the arq job dict that routes a `Rejected` to `REJECT_JOB`.

Each carries the bytes it came in and the id of the key that signed it (`signed_by`), so that a
dead letter or a processed command can name the key. Their reprs never show a payload: arq
formats job arguments into its logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from taskline_producer.contract import Command

from worker.pipeline.job_options import NO_OPTIONS, JobOptions

__all__ = ["REJECT_JOB", "BulkDelivery", "Delivery", "Rejected", "rejection"]

REJECT_JOB: Final = "taskline_reject"
"""Internal job function that dead-letters what the decoder refused. Naming it in a job does
nothing more than that: the decoder routes only the command functions to real work."""


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


def rejection(
    raw: bytes,
    function: str | None,
    reason: str,
    command_id: str | None = None,
    outcome_ttl: int | None = None,
    *,
    signed_by: str | None = None,
) -> dict[str, Any]:
    """The arq job dict that dead-letters `raw` (through `REJECT_JOB`) with `reason`."""
    rejected = Rejected(raw, function, reason, command_id, outcome_ttl, signed_by)
    return {"f": REJECT_JOB, "a": (rejected,), "k": {}, "t": None, "et": 0}
