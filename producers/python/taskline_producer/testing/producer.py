"""`RecordingProducer`: the real `TaskProducer`, over Redis kept in memory, keeping what it sends."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, cast
from uuid import UUID

from redis.asyncio import Redis

from taskline_producer import keys
from taskline_producer.client import TaskProducer
from taskline_producer.contract import DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_QUEUE
from taskline_producer.outcomes import Outcome
from taskline_producer.signing import SigningKey
from taskline_producer.testing.inspection import DEFAULT_FUTURE_TOLERANCE_S, DEFAULT_MAX_BULK_PAYLOAD_BYTES, SentJob
from taskline_producer.testing.matching import SentCommand
from taskline_producer.testing.memory_redis import MemoryRedis
from taskline_producer.testing.recording import ANY_JOB, Recording
from taskline_producer.wire import DEFAULT_JOB_TTL_MS

__all__ = ["RecordingProducer"]

Settled = Literal["applied", "duplicate", "dead_letter", "retrying"]


class RecordingProducer(TaskProducer):
    """A `TaskProducer` for a service's own tests: no Redis server, no worker.

    Every call runs the real producer's code (the same validation, the same job bytes, signed
    with `signing_key` when given, the same duplicate rule by job id) against Redis kept in
    memory, and each job is then read back as a worker would read it: a job a worker would
    dead-letter raises `WouldBeRefused` at the call that sent it. What was sent is in `jobs`
    (whole jobs, their exact bytes included) and `commands()`; `assert_sent` and
    `assert_not_sent` check it. `settle()` writes the outcome a worker would, for code that
    waits on `receipt.outcome()`.

    The settings a worker would judge by (its size limits and future tolerance) default to the
    workers' defaults; pass the ones your workers run with.
    """

    def __init__(
        self,
        *,
        queue: str = DEFAULT_QUEUE,
        signing_key: SigningKey | None = None,
        job_ttl_ms: int = DEFAULT_JOB_TTL_MS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_bulk_payload_bytes: int = DEFAULT_MAX_BULK_PAYLOAD_BYTES,
        future_tolerance_s: float | None = DEFAULT_FUTURE_TOLERANCE_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.recording = Recording(
            signing_key=signing_key,
            max_payload_bytes=max_payload_bytes,
            max_bulk_payload_bytes=max_bulk_payload_bytes,
            future_tolerance_s=future_tolerance_s,
            clock=clock,
        )
        self.memory = MemoryRedis(on_enqueue=self.recording.record)
        super().__init__(
            cast(Redis, self.memory), queue=queue, job_ttl_ms=job_ttl_ms, owns_client=True, signing_key=signing_key
        )

    @classmethod
    def connect(cls, redis_url: str, *, queue: str = DEFAULT_QUEUE, **kwargs: Any) -> RecordingProducer:
        """Not for a recording producer, which needs no Redis: construct it, `RecordingProducer()`."""
        raise TypeError("a RecordingProducer keeps its Redis in memory: build it with RecordingProducer(...), no URL")

    @property
    def jobs(self) -> list[SentJob]:
        """Every job sent, in order: queued ones and ones Redis refused as duplicates (`queued`)."""
        return list(self.recording.jobs)

    def commands(self, function: str | None = None, /, **filters: Any) -> list[SentCommand]:
        """The sent commands that match (see `Recording.commands`), in the order they were sent."""
        return self.recording.commands(function, **filters)

    def assert_sent(self, function: str | None = None, /, **filters: Any) -> SentCommand:
        """Assert a matching command was sent (`count=` for exactly that many); the last one.

        Filters: the command's fields (`user_id=7`, `title="..."`, `task_id=<UUID or text>`,
        `description=ABSENT`, a callable as a predicate), and the job's `signed_by`,
        `outcome_ttl` and `queued` (default True: refused duplicates do not count)."""
        return self.recording.assert_sent(function, **filters)

    def assert_not_sent(self, function: str | None = None, /, **filters: Any) -> None:
        """Assert no matching command was sent (the same filters as `assert_sent`)."""
        self.recording.assert_not_sent(function, **filters)

    def clear(self) -> None:
        """Forget what was sent, and the jobs Redis would hold (so nothing counts as a duplicate)."""
        self.recording.clear()
        self.memory.strings.clear()
        self.memory.queues.clear()
        self.memory.lists.clear()

    def settle(self, command_id: UUID | str, state: Settled = "applied", *, reason: str | None = None) -> Outcome:
        """Write the outcome a worker would write for a command sent with `outcome_ttl`, so that
        `receipt.outcome()` and `producer.outcome()` return it."""
        command_id = command_id if isinstance(command_id, UUID) else UUID(command_id)
        sent = self.recording.commands(None, command_id=command_id, queued=True, signed_by=ANY_JOB)
        if not sent:
            raise ValueError(f"command {command_id} was not queued by this producer: nothing to settle")
        job = sent[-1].job
        if job.outcome_ttl is None:
            raise ValueError(f"command {command_id} was sent without outcome_ttl: a worker records no outcome for it")
        outcome = Outcome(
            command_id,
            state,
            reason=reason,
            job_id=job.job_id,
            at=datetime.now(UTC),
            enqueued_at_ms=job.envelope.get("et"),
        )
        self.memory.strings[keys.outcome_key(str(command_id))] = json.dumps(outcome.as_dict()).encode()
        if outcome.final:
            self.memory.lists.setdefault(keys.outcome_done_key(str(command_id)), []).insert(0, b"1")
        return outcome
