"""Outcomes: what became of a command, read from Redis, and waiting for a final one.

A job sent with `outcome_ttl` has each of its commands' outcomes written by the worker to
`taskline:outcome:<command id>` (JSON, kept `outcome_ttl` seconds); on a final state the worker
also pushes a token onto `taskline:outcome:<command id>:done`. A waiter reads the outcome, and
while it is not final blocks on the done list with `BLMOVE <done> <done> LEFT LEFT <seconds>`,
which moves the token onto the same list (it stays for every other waiter).

A re-send (the same command sent again after its job ended) is a new job: its waiter ignores the
outcome an earlier job of the same command wrote (the outcome's `enqueued_at_ms`, the job's `et`,
is older than the re-send's), and gets the new job's own, `duplicate`.

Without an outcome key (or with only an earlier send's) the state comes from arq's keys: `queued`
while the job key exists and no worker holds it, `running` while a worker does, `unknown`
otherwise (sent without outcomes, or the outcome expired).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, cast
from uuid import UUID

from redis.asyncio import Redis

from taskline_producer import keys

__all__ = ["FINAL_STATES", "Outcome", "OutcomeTimeout", "State", "read_outcome", "wait_for_outcome"]

State = Literal["applied", "duplicate", "dead_letter", "retrying", "queued", "running", "unknown"]

FINAL_STATES: Final[frozenset[str]] = frozenset({"applied", "duplicate", "dead_letter"})
"""States a command does not leave: `applied`, `duplicate` (it had already taken effect) and
`dead_letter` (see `reason`; a replay of the dead letter can still apply it)."""

_DEFENSIVE_PAUSE_S: Final = 0.1


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one command, as far as Redis knows.

    `state` is final (`applied`, `duplicate`, `dead_letter`) or not (`retrying`, with `reason`
    and `next_try_at`; `queued`; `running`; `unknown`). `job_id` and `at` are set for states the
    worker wrote."""

    command_id: UUID
    state: State
    reason: str | None = None
    job_id: str | None = None
    at: datetime | None = None
    next_try_at: datetime | None = None
    enqueued_at_ms: int | None = None
    """When the job that wrote this outcome was enqueued (its `et`, epoch ms); None from workers
    older than this member."""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def earlier_than(self, sent_at_ms: int | None) -> bool:
        """Written for a job enqueued before `sent_at_ms`: an earlier send of the same command."""
        return sent_at_ms is not None and self.enqueued_at_ms is not None and self.enqueued_at_ms < sent_at_ms

    @classmethod
    def from_json(cls, raw: bytes | str) -> Outcome:
        """An outcome as the worker wrote it (the JSON of `taskline:outcome:<command id>`)."""
        data: dict[str, Any] = json.loads(raw)
        next_try = data.get("next_try_at")
        return cls(
            command_id=UUID(data["command_id"]),
            state=cast(State, data["state"]),
            reason=data.get("reason"),
            job_id=data.get("job_id"),
            at=datetime.fromisoformat(data["at"]) if data.get("at") else None,
            next_try_at=datetime.fromisoformat(next_try) if next_try else None,
            enqueued_at_ms=data.get("enqueued_at_ms"),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the worker's member names."""
        return {
            "command_id": str(self.command_id),
            "job_id": self.job_id,
            "state": self.state,
            "reason": self.reason,
            "at": self.at.isoformat() if self.at else None,
            "next_try_at": self.next_try_at.isoformat() if self.next_try_at else None,
            "enqueued_at_ms": self.enqueued_at_ms,
        }


class OutcomeTimeout(TimeoutError):
    """No final outcome within the timeout; `outcome` is the last state seen."""

    def __init__(self, outcome: Outcome, timeout: float) -> None:
        self.outcome = outcome
        self.timeout = timeout
        hint = ""
        if outcome.state == "unknown":
            hint = " (was it sent with outcome_ttl, and is its outcome younger than that?)"
        super().__init__(
            f"command {outcome.command_id} has no final outcome after {timeout:g} s; last seen: {outcome.state}{hint}"
        )


async def read_outcome(redis: Redis, command_id: UUID, job_id: str, *, sent_at_ms: int | None = None) -> Outcome:
    """The command's outcome now, in one round trip (see the module docstring for the states);
    with `sent_at_ms` (the send's `et`), an outcome of an earlier send is not this one's."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.outcome_key(str(command_id)))
        pipe.exists(keys.job_key(job_id))
        pipe.exists(keys.in_progress_key(job_id))
        raw, queued, running = await pipe.execute()
    if raw is not None:
        outcome = Outcome.from_json(raw)
        if not outcome.earlier_than(sent_at_ms):
            return outcome
    if running:
        return Outcome(command_id, "running", job_id=job_id)
    if queued:
        return Outcome(command_id, "queued", job_id=job_id)
    return Outcome(command_id, "unknown", job_id=job_id)


async def wait_for_outcome(
    redis: Redis,
    command_id: UUID,
    job_id: str,
    timeout: float,  # noqa: ASYNC109
    *,
    sent_at_ms: int | None = None,
) -> Outcome:
    """Wait up to `timeout` seconds for the command's final outcome; raise `OutcomeTimeout`
    (carrying the last state seen) when it does not come. With `sent_at_ms` (the send's `et`),
    outcomes of earlier sends of the same command are ignored."""
    if timeout <= 0:
        raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    done = keys.outcome_done_key(str(command_id))
    # A client with a socket timeout would fail a longer block: block in slices below it.
    socket_timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
    longest_block = socket_timeout / 2 if socket_timeout else None
    while True:
        outcome = await read_outcome(redis, command_id, job_id, sent_at_ms=sent_at_ms)
        if outcome.final:
            return outcome
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise OutcomeTimeout(outcome, timeout)
        block = min(remaining, longest_block) if longest_block else remaining
        # BLMOVE's timeout 0 would block forever: never pass less than a millisecond. Redis takes
        # fractional seconds; redis-py 5 annotates the argument as int.
        seconds: Any = max(block, 0.001)
        token = await redis.blmove(done, done, seconds, "LEFT", "LEFT")
        if token is not None and not (await read_outcome(redis, command_id, job_id, sent_at_ms=sent_at_ms)).final:
            # A token without a final outcome of this send: an earlier send's token (a re-send
            # waits for its own outcome, polling every 0.1 s), or a race with the worker's write
            # of a state that is not final (it clears the list): do not spin on it.
            await asyncio.sleep(min(_DEFENSIVE_PAUSE_S, max(deadline - loop.time(), 0)))
