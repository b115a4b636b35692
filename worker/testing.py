"""Run the jobs a service's tests sent through the worker's own rules, in process, against a test
database: for teams that want the effect of their commands in their tests, not only what was sent.

    from taskline_producer.testing import RecordingProducer
    from worker.testing import apply_sent

    producer = RecordingProducer()
    await signup(user_id=7, producer=producer)  # the service's code
    async with sessions() as session, session.begin():
        results = await apply_sent(session, producer.jobs)
    assert [r.state for r in results] == ["applied"]

Each job goes through the worker's decoder (size limits, envelope, contract, signature when a
`Decoder` with a verifier is given) and its commands through the same statements a worker runs
(`worker.pipeline.apply`), in the caller's transaction: the caller opens and commits it, as the
worker's handler does. What a worker would do with each command comes back as a `CommandResult`:
`applied`, `duplicate`, `dead_letter` (with the worker's reason) or `not_yet` (a worker would
retry it: its task or user does not exist yet). Nothing is written to Redis, no dead-letter row is
written, and jobs Redis refused as duplicates (`SentJob.queued` false) never reach a worker, so
they are left out. The database must be migrated (`taskline migrate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession
from taskline_producer.contract import DEFAULT_MAX_PAYLOAD_BYTES, Command, is_in_future
from taskline_producer.testing import SentJob

from worker.pipeline.apply import Outcome, apply_commands
from worker.pipeline.decode import REJECT_JOB, BulkDelivery, Decoder, Delivery, Rejected
from worker.pipeline.failures import Kind, classify_outcome

__all__ = ["CommandResult", "apply_sent"]

State = Literal["applied", "duplicate", "dead_letter", "not_yet"]
_DEFAULT_BULK_BYTES = 1024 * 1024
_DEFAULT_FUTURE_TOLERANCE_S = 3600.0


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a worker would have done with one command (or with a job it could not read)."""

    job_id: str
    function: str | None
    command_id: str | None
    state: State
    reason: str | None = None


async def apply_sent(
    session: AsyncSession,
    jobs: Iterable[SentJob],
    *,
    decoder: Decoder | None = None,
    now: datetime | None = None,
    future_tolerance_s: float = _DEFAULT_FUTURE_TOLERANCE_S,
    worker_id: str = "testing",
) -> list[CommandResult]:
    """Decode each queued job as a worker does and apply its commands in `session`'s open
    transaction, in the order they were sent; one result per command (per job a worker could
    not read). `decoder`: the workers' limits and signing keys (default: the default limits,
    signatures not checked)."""
    decode = decoder or Decoder(DEFAULT_MAX_PAYLOAD_BYTES, _DEFAULT_BULK_BYTES)
    horizon = timedelta(seconds=future_tolerance_s)
    results: list[CommandResult] = []
    for job in jobs:
        if not job.queued:
            continue
        decoded = decode(job.raw)
        argument = decoded["a"][0]
        if decoded["f"] == REJECT_JOB and isinstance(argument, Rejected):
            results.append(
                CommandResult(job.job_id, argument.function, argument.command_id, "dead_letter", argument.reason)
            )
            continue
        by_index: dict[int, CommandResult] = {}
        if isinstance(argument, Delivery):
            commands, signed_by = [(0, argument.command)], argument.signed_by
        elif isinstance(argument, BulkDelivery):
            commands, signed_by = argument.commands, argument.signed_by
            for index, item in argument.rejected:
                by_index[index] = CommandResult(job.job_id, item.function, item.command_id, "dead_letter", item.reason)
        else:  # pragma: no cover - the decoder hands on nothing else
            raise TypeError(f"the decoder returned {type(argument).__name__} for job {job.job_id}")
        context = _Job(job.job_id, signed_by, now or datetime.now(UTC), horizon, worker_id)
        by_index.update(await _apply(session, context, commands))
        results.extend(by_index[index] for index in sorted(by_index))
    return results


@dataclass(frozen=True, slots=True)
class _Job:
    job_id: str
    signed_by: str | None
    now: datetime
    horizon: timedelta
    worker_id: str


def _state(outcome: Outcome) -> tuple[State, str | None]:
    failure = classify_outcome(outcome)
    if failure is None:
        return ("duplicate" if outcome is Outcome.DUPLICATE else "applied"), None
    kind, reason = failure
    return ("not_yet" if kind is Kind.NOT_YET else "dead_letter"), reason


async def _apply(session: AsyncSession, job: _Job, commands: list[tuple[int, Command]]) -> dict[int, CommandResult]:
    """The job's commands applied as a worker applies them (the future check first), by index."""
    results: dict[int, CommandResult] = {}
    due: list[tuple[int, Command]] = []
    for index, command in commands:
        if is_in_future(command, job.now, job.horizon):
            ahead = f"issued_at lies more than {job.horizon.total_seconds():g} s ahead of the worker's clock"
            results[index] = CommandResult(job.job_id, command.function, str(command.command_id), "dead_letter", ahead)
        else:
            due.append((index, command))
    if not due:
        return results
    signers = {command.command_id: job.signed_by for _, command in due} if job.signed_by else None
    outcomes = await apply_commands(session, [c for _, c in due], worker_id=job.worker_id, signers=signers)
    for (index, command), outcome in zip(due, outcomes, strict=True):
        state, reason = _state(outcome)
        results[index] = CommandResult(job.job_id, command.function, str(command.command_id), state, reason)
    return results
