"""Outcomes: the worker's side of `taskline_producer.outcomes`, for jobs that asked for them.

A job whose `k.outcome_ttl` is set has each of its commands' states written to
`taskline:outcome:<command id>` (JSON, `EX outcome_ttl`) as it reaches them: `applied`,
`duplicate` and `dead_letter` are final, and push a token onto `taskline:outcome:<command id>:done`
(then `EXPIRE`) in the same MULTI, which wakes every waiting producer; `retrying` is not, and
clears that list, so a waiter never wakes to a state that is not final (a replayed dead letter
goes back to retrying). Jobs without `outcome_ttl` never reach this module: the job functions
build an `OutcomeReport` only for jobs that asked, so the others pay one attribute test.

Writing an outcome never fails a job: the command's effect is already decided, and a lost
outcome only makes a waiting producer time out (with the last state it saw).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskline_producer import keys

__all__ = ["FINAL_STATES", "OutcomeReport", "OutcomeState"]

OutcomeState = Literal["applied", "duplicate", "dead_letter", "retrying"]
FINAL_STATES: Final[frozenset[str]] = frozenset({"applied", "duplicate", "dead_letter"})


@dataclass(slots=True)
class OutcomeReport:
    """The outcomes one job owes: collected with `add`, written in one MULTI by `write`."""

    ttl: int
    job_id: str
    command_ids: Sequence[str] = ()
    """The commands whose fate is the job's own (a retry or dead letter of the whole job)."""
    pending: list[tuple[str, OutcomeState, str | None, datetime | None]] = field(default_factory=list)

    def add(
        self, command_id: str, state: OutcomeState, reason: str | None = None, retry_in_s: float | None = None
    ) -> None:
        next_try_at = datetime.now(UTC) + timedelta(seconds=retry_in_s) if retry_in_s is not None else None
        self.pending.append((command_id, state, reason, next_try_at))

    def add_job(self, state: OutcomeState, reason: str | None = None, retry_in_s: float | None = None) -> None:
        """The same state for every command whose fate is the job's own."""
        for command_id in self.command_ids:
            self.add(command_id, state, reason, retry_in_s)

    async def write(self, redis: Redis, log: Any) -> None:
        """Write what was added (and forget it). Logs, never raises, when Redis cannot take it."""
        if not self.pending:
            return
        at = datetime.now(UTC).isoformat()
        try:
            async with redis.pipeline(transaction=True) as pipe:
                for command_id, state, reason, next_try_at in self.pending:
                    document = {
                        "command_id": command_id,
                        "job_id": self.job_id,
                        "state": state,
                        "reason": reason,
                        "at": at,
                        "next_try_at": next_try_at.isoformat() if next_try_at else None,
                    }
                    pipe.set(keys.outcome_key(command_id), json.dumps(document, ensure_ascii=False), ex=self.ttl)
                    done = keys.outcome_done_key(command_id)
                    if state in FINAL_STATES:
                        pipe.rpush(done, state)
                        pipe.expire(done, self.ttl)
                    else:
                        pipe.delete(done)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "could not record outcomes", job_id=self.job_id, outcomes=len(self.pending), error=type(exc).__name__
            )
        finally:
            self.pending.clear()
