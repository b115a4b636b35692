"""What a running worker holds, built at startup and handed to every job through arq's ctx."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine
from taskline_producer import keys
from taskline_producer.contract import Command
from taskline_producer.wire import DEFAULT_JOB_TTL_MS, ENQUEUE_SCRIPT, enqueue_arguments, epoch_ms, job_of_command

from worker.config.settings import Settings
from worker.pipeline.dead_letters import record_dead_letter
from worker.pipeline.failures import RetryPolicy, is_database_unreachable
from worker.pipeline.group_commit import GroupCommitter
from worker.pipeline.job_options import JobOptions
from worker.pipeline.outcomes import OutcomeWriter
from worker.pipeline.signatures import Verifier
from worker.pipeline.sinks import CommandMetrics, JobTrace, OutageReporter
from worker.store.engine import Sessions

__all__ = ["JobContext", "Runtime"]

# A job's transient failures are counted in Redis (keys.transient_key): arq's try counter also
# counts not-yet retries and crashed tries, so it cannot be the transient budget. Deleted when the
# job finishes; expires like arq's own try counter otherwise.


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: Sessions
    committer: GroupCommitter
    policy: RetryPolicy
    metrics: CommandMetrics
    redis: Redis
    log: Any
    clock: Callable[[], float] = field(default=time.perf_counter)
    log_each_command: bool = False
    """Log a line per applied command (TASKLINE_LOG_LEVEL=DEBUG); decided once, not per job."""
    worker_id: str | None = None
    """This process's id (`Health.worker_id`), written with its dead letters; its GroupCommitter
    is built with the same id for the processed commands."""
    database: OutageReporter | None = None
    """Says once when PostgreSQL goes away and once when it is back (worker/observe/outages.py)."""
    outcome_writer: OutcomeWriter = field(init=False)
    """Writes the outcomes of jobs that asked for them, batched across the jobs that end together."""
    verifier: Verifier = field(init=False)
    """The signing keys: what signs a job the worker writes for a signed one (a bulk item on its own)."""

    def __post_init__(self) -> None:
        self.outcome_writer = OutcomeWriter(self.redis, self.log)
        self.verifier = Verifier(self.settings.signing_keys, required=self.settings.require_signatures)

    def database_failed(self, exc: BaseException) -> bool:
        """Note a failed apply; True when it means the database is unreachable (an outage)."""
        if self.database is None or not is_database_unreachable(exc):
            return False
        self.database.down(exc, what="commands wait and are retried; ")
        return True

    def database_answered(self) -> None:
        if self.database is not None and self.database.is_down:
            self.database.up()

    async def dead_letter(self, **fields: Any) -> None:
        await record_dead_letter(
            self.sessions,
            queue=self.settings.queue,
            max_payload_bytes=self.settings.max_payload_bytes,
            worker_id=self.worker_id,
            **fields,
        )

    async def count_transient_failure(self, job_id: str, *, fallback: int) -> int:
        """Count one more transient failure of the job; returns its count so far. When Redis
        cannot count (it is the thing that failed), `fallback` (the job's try number) is used."""
        key = keys.transient_key(job_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, keys.RETRY_KEY_TTL_S)
                count, _ = await pipe.execute()
        except (RedisError, OSError):
            return fallback
        return int(count)

    def single_job(self, command: Command, options: JobOptions, signed_by: str | None) -> bytes:
        """A bulk item as the single-command job a replay enqueues (with the bulk job's options),
        signed again with the bulk job's key when it was signed, so that it verifies as the
        producer's own (the worker holds the producers' secrets: HMAC keys are shared)."""
        return job_of_command(command, epoch_ms(), options.as_k(), self.verifier.signing_key(signed_by))

    async def requeue(
        self,
        commands: Sequence[Command],
        *,
        defer_s: float,
        options: dict[str, Any] | None = None,
        signed_by: str | None = None,
        trace: str | None = None,
    ) -> None:
        """Enqueue commands as single-command jobs (job id = command id), after `defer_s`, with the
        job options (`k`) of the job they came in, signed with its key (`signed_by`) when it was,
        and its trace context (`trace`, its trace key's value) beside them when it had one."""
        now = epoch_ms()
        key = self.verifier.signing_key(signed_by)
        jobs: list[Any] = []
        for command in commands:
            jobs.append(str(command.command_id))
            jobs.append(job_of_command(command, now, options, key))
        args = enqueue_arguments(now + int(defer_s * 1000), DEFAULT_JOB_TTL_MS, jobs, trace)
        await cast(Awaitable[Any], self.redis.eval(ENQUEUE_SCRIPT, 1, self.settings.queue, *args))


class JobContext(TypedDict):
    """arq's ctx as taskline's jobs see it."""

    redis: Redis
    job_id: str
    job_try: int
    score: int
    runtime: Runtime
    enqueued_ms: NotRequired[int | None]
    """The job's `et` (when its producer enqueued it, epoch ms), written into its outcomes so that
    a producer waiting on a re-send ignores the outcome of an earlier send."""
    trace: NotRequired[JobTrace]
    """The job's spans, only when the worker traces (set by the job runner)."""
    trace_context: NotRequired[str]
    """Its trace key's value (the producer's W3C trace context, JSON), only when the worker traces
    and the producer wrote one: the bulk items it enqueues again carry it on."""
