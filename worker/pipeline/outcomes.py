"""Outcomes: the worker's side of `taskline_producer.outcomes`, for jobs that asked for them.

A job whose `k.outcome_ttl` is set has each of its commands' states written to
`taskline:outcome:<command id>` (JSON, `EX outcome_ttl`) as it reaches them. `applied`,
`duplicate` and `dead_letter` are final: in the same atomic step as the SET (a Lua script, one
per batch of jobs) they push a token onto `taskline:outcome:<command id>:done` (then `EXPIRE`),
which wakes every waiting producer. `retrying` is not final and clears that list, so a waiter
never wakes to a state that is not final (a replayed dead letter goes back to retrying). Jobs
without `outcome_ttl` never reach this module: the job functions build an `OutcomeReport` only
for jobs that asked, so the others pay one attribute test.

Writing an outcome never fails a job: the command's effect is already decided, and a lost
outcome only makes a waiting producer time out (with the last state it saw).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskline_producer import keys

__all__ = ["FINAL_STATES", "OutcomeReport", "OutcomeState", "OutcomeWriter"]

OutcomeState = Literal["applied", "duplicate", "dead_letter", "retrying"]
FINAL_STATES: Final[frozenset[str]] = frozenset({"applied", "duplicate", "dead_letter"})

WRITE_SCRIPT: Final = """
-- KEYS[2i-1], KEYS[2i]: outcome key and done list of outcome i;
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]: its JSON, its TTL in seconds, its state if final ('' if not).
for i = 1, #KEYS / 2 do
  local outcome, done, ttl, final = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i - 1], ARGV[3 * i]
  redis.call('SET', outcome, ARGV[3 * i - 2], 'EX', ttl)
  if final ~= '' then
    redis.call('RPUSH', done, final)
    redis.call('EXPIRE', done, ttl)
  else
    redis.call('DEL', done)
  end
end
return #KEYS / 2
"""
"""Writes a batch of outcomes atomically (as the MULTI of SET, RPUSH, EXPIRE per outcome that
docs/contract.md's "Outcomes" describes would, in one command instead of three or four per
outcome: a third of the worker's CPU)."""

_Pending = tuple[str, OutcomeState, str | None, datetime | None]  # command id, state, reason, next try


@dataclass(slots=True)
class OutcomeReport:
    """The outcomes one job owes: gathered with `add`, written by the worker's `OutcomeWriter`."""

    ttl: int
    job_id: str
    command_ids: Sequence[str] = ()
    """The commands whose fate is the job's own (a retry or dead letter of the whole job)."""
    pending: list[_Pending] = field(default_factory=list)

    def add(
        self, command_id: str, state: OutcomeState, reason: str | None = None, retry_in_s: float | None = None
    ) -> None:
        next_try_at = datetime.now(UTC) + timedelta(seconds=retry_in_s) if retry_in_s is not None else None
        self.pending.append((command_id, state, reason, next_try_at))

    def add_job(self, state: OutcomeState, reason: str | None = None, retry_in_s: float | None = None) -> None:
        """The same state for every command whose fate is the job's own."""
        for command_id in self.command_ids:
            self.add(command_id, state, reason, retry_in_s)


class OutcomeWriter:
    """Writes the outcomes of all the jobs that end together in one MULTI (one round trip).

    Group commit makes many jobs end in the same moment; each awaits `write`, which adds its
    outcomes to the batch being gathered and waits until that batch is in Redis (one EVALSHA of
    `WRITE_SCRIPT`, atomic). The first job
    of a batch starts its flush as a task, which runs once the event loop has let the others add
    theirs. One worker holds one writer (`Runtime.outcome_writer`)."""

    def __init__(self, redis: Redis, log: Any) -> None:
        self.redis = redis
        self.log = log
        self._batch: list[tuple[OutcomeReport, list[_Pending]]] = []
        self._written: asyncio.Future[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._script = redis.register_script(WRITE_SCRIPT)

    async def write(self, report: OutcomeReport) -> None:
        """Write what the report gathered (and clear it). Logs, never raises, when Redis cannot take it."""
        if not report.pending:
            return
        self._batch.append((report, report.pending))
        report.pending = []
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
            flush = asyncio.create_task(self._flush(), name="taskline-outcomes")
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        await asyncio.shield(self._written)

    async def _flush(self) -> None:
        batch, written = self._batch, self._written
        self._batch, self._written = [], None
        assert written is not None
        at = datetime.now(UTC).isoformat()
        script_keys: list[str] = []
        args: list[str | int] = []
        for report, pending in batch:
            for command_id, state, reason, next_try_at in pending:
                document = {
                    "command_id": command_id,
                    "job_id": report.job_id,
                    "state": state,
                    "reason": reason,
                    "at": at,
                    "next_try_at": next_try_at.isoformat() if next_try_at else None,
                }
                script_keys += (keys.outcome_key(command_id), keys.outcome_done_key(command_id))
                args += (json.dumps(document, ensure_ascii=False), report.ttl, state if state in FINAL_STATES else "")
        try:
            await self._script(keys=script_keys, args=args)
        except (RedisError, OSError) as exc:
            self.log.warning(
                "could not record outcomes",
                jobs=[report.job_id for report, _ in batch][:10],
                outcomes=len(script_keys) // 2,
                error=type(exc).__name__,
            )
        finally:
            written.set_result(None)
