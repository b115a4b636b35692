"""What sending did: a `Receipt` per command, a `BulkReceipt` per apply_commands job, a
`SendReport` for `send_many`; a receipt sent with `outcome_ttl` waits for its outcome through the
producer that returned it (taskline_producer.client)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from taskline_producer.outcomes import Outcome, OutcomeTimeout

if TYPE_CHECKING:
    from taskline_producer.client import TaskProducer

__all__ = ["BulkReceipt", "Receipt", "SendReport"]


def _require_outcomes(outcome_ttl: int | None, what: str) -> None:
    if outcome_ttl is None:
        raise ValueError(
            f"{what} was sent without outcome_ttl, so no outcome is recorded for it:"
            " pass outcome_ttl=<seconds> when sending to be able to wait for the outcome"
        )


def _producer_of(producer: TaskProducer | None) -> TaskProducer:
    if producer is None:
        raise ValueError("this receipt was not returned by a TaskProducer: use producer.outcome(command_id) instead")
    return producer


@dataclass(frozen=True, slots=True)
class Receipt:
    """What sending one command did: its ids, and whether Redis took it or refused a duplicate.

    Sent with `outcome_ttl`, `await receipt.outcome(timeout=...)` waits for what became of it."""

    command_id: UUID
    task_id: UUID
    queued: bool
    outcome_ttl: int | None = None
    producer: TaskProducer | None = field(default=None, repr=False, compare=False)

    @property
    def job_id(self) -> str:
        return str(self.command_id)

    async def outcome(self, timeout: float = 30.0) -> Outcome:  # noqa: ASYNC109
        """Wait up to `timeout` seconds for a final outcome (applied, duplicate, dead_letter);
        raises `OutcomeTimeout` carrying the last state seen (queued, running, retrying...)."""
        _require_outcomes(self.outcome_ttl, f"command {self.command_id}")
        return await _producer_of(self.producer).outcome(self.command_id, timeout=timeout)

    async def status(self) -> Outcome:
        """The outcome now, final or not, without waiting."""
        return await _producer_of(self.producer).status(self.command_id)


@dataclass(slots=True)
class SendReport:
    """What `send_many` did."""

    queued: int = 0
    duplicates: list[UUID] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BulkReceipt:
    """One `apply_commands` job: its id and whether it was queued.

    Sent with `outcome_ttl`, `await receipt.outcomes(timeout=...)` waits for every command's."""

    job_id: str
    commands: int
    queued: bool
    command_ids: tuple[UUID, ...] = ()
    outcome_ttl: int | None = None
    producer: TaskProducer | None = field(default=None, repr=False, compare=False)

    async def outcomes(self, timeout: float = 30.0) -> dict[UUID, Outcome]:  # noqa: ASYNC109
        """Wait up to `timeout` seconds in all for every command's final outcome, by command id;
        raises `OutcomeTimeout` for the first command still without one."""
        _require_outcomes(self.outcome_ttl, f"apply_commands job {self.job_id}")
        producer = _producer_of(self.producer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found: dict[UUID, Outcome] = {}
        for command_id in self.command_ids:
            remaining = max(deadline - loop.time(), 0.001)
            try:
                found[command_id] = await producer.outcome(command_id, job_id=self.job_id, timeout=remaining)
            except OutcomeTimeout as exc:
                raise OutcomeTimeout(exc.outcome, timeout) from None
        return found
