"""Running one claimed job to its end: taskline's own replacement for arq's `Worker.run_job`.

arq's run_job would fetch the job again, log and drop a payload it cannot deserialize, drop a
job whose key expired or whose tries ran out (a failed result nobody reads), and treat any
exception from its own bookkeeping as the worker's problem. Here every claimed job ends in one
of four ways, and nothing else:

* FINISH: the job function returned (the command was applied, was a duplicate, or became a
  dead letter), or the job can never run and became a dead letter (its key expired, its tries
  ran out, or it is larger than any job may be: the claim script measured it and read only its
  first bytes);
* DEFER: the job asked to run again later (arq's `Retry`), or an error escaped the job function
  and is retried within its budget (`worker.pipeline.jobs.settle_escaped_error`);
* RELEASE: the job was cancelled (a stopping worker, a lost Redis connection): its claim is
  dropped so another try runs it at once, and its transaction rolled back;
* LEAVE: the job's outcome could not be recorded at all (the database and Redis both away);
  its claim expires and another try runs it, and the command record makes that try a no-op if
  the first one committed.

When the worker traces (`ctx["tracing"]`, worker/observe/tracing.py), each decoded job gets its
spans (`ctx["trace"]`) in the trace its producer wrote beside it (the trace key, read at the
claim: worker/arq_seam/trace_keys.py, kept in `ctx["trace_context"]` for the jobs it enqueues),
started with the claim and the decoder's times and ended with the job's ending; otherwise the
runner checks that one key per job and does nothing more.

Any exception, wherever it comes from (decoding, numbers or timestamps out of range, our code),
is classified by what it is (`worker.pipeline.failures.classify_exception`); none reaches arq's
loop, so a job can never make the worker think its Redis connection was lost.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from arq.worker import Function, Retry

from worker.arq_seam.claim import Claimed
from worker.pipeline.jobs import give_up_on_job, settle_escaped_error
from worker.pipeline.runtime import JobContext

__all__ = ["Ending", "JobEnd", "JobRunner"]

Hook = Callable[[dict[str, Any]], Awaitable[Any]]
"""arq's on_job_start / on_job_end hooks: called around the job function, with the job's ctx. An
exception in one is classified like one from the job (arq would stop the worker)."""

EXPIRED_REASON: Final = (
    "the job's key expired in Redis before a worker ran it (the job TTL, one day by default, passed"
    " while it waited); the payload is gone: ask the producer to send the command again"
)


def oversized_reason(size: int) -> str:
    return (
        f"the job is {size} bytes in Redis, more than any job may be (TASKLINE_MAX_PAYLOAD_BYTES,"
        " TASKLINE_MAX_BULK_PAYLOAD_BYTES): it was not loaded, and only its first bytes are kept here;"
        " split the work into smaller commands"
    )


class Ending(enum.Enum):
    FINISH = "finish"
    DEFER = "defer"
    RELEASE = "release"
    LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class JobEnd:
    ending: Ending
    defer_ms: int = 0
    """For DEFER: how long from now before the job may run again."""
    failed: bool = False
    """For FINISH: whether the job ended as a failure (arq's `jobs_failed` counts it)."""
    result: str | None = None
    """What the job function returned (its outcome), for its trace."""


class JobRunner:
    """Runs claimed jobs: decode, check the try budget, call the job function, classify."""

    def __init__(
        self,
        *,
        functions: Mapping[str, Function],
        decode: Callable[[bytes], dict[str, Any]],
        ctx: Mapping[str, Any],
        max_tries: int,
        timeout_s: float,
        log: Any,
        on_job_start: Hook | None = None,
        on_job_end: Hook | None = None,
    ) -> None:
        self.functions = functions
        self.decode = decode
        self.ctx = ctx
        self.max_tries = max_tries
        self.timeout_s = timeout_s
        self.log = log
        self.on_job_start = on_job_start
        self.on_job_end = on_job_end

    async def run(self, job: Claimed, trace: str | None = None) -> JobEnd:
        """Run the job to its end; `trace`: its trace key's value (only a worker that traces reads it)."""
        ctx = cast(JobContext, {**self.ctx, "job_id": job.job_id, "job_try": job.job_try, "score": job.score})
        if trace is not None:
            ctx["trace_context"] = trace
        try:
            end = await self._run(ctx, job)
        except asyncio.CancelledError:
            if "trace" in ctx:
                ctx["trace"].end(Ending.RELEASE.value, None)
            raise  # the caller releases the claim
        except Retry as retry:
            end = JobEnd(Ending.DEFER, retry.defer_score or 0)
        except Exception:
            # Only reached when even the fallbacks failed (writing a dead letter with the
            # database away raises Retry, handled above): leave the claim to expire.
            self.log.exception("could not settle a job; its claim will expire and it runs again", job_id=job.job_id)
            end = JobEnd(Ending.LEAVE)
        if "trace" in ctx:
            ctx["trace"].end(end.ending.value, end.result)
        return end

    async def _run(self, ctx: JobContext, job: Claimed) -> JobEnd:
        if job.oversized:
            await give_up_on_job(ctx, job.payload, None, oversized_reason(job.oversized))
            return JobEnd(Ending.FINISH, failed=True)
        if job.payload is None:
            await give_up_on_job(ctx, None, None, EXPIRED_REASON)
            return JobEnd(Ending.FINISH, failed=True)
        raw = job.payload
        tracing = self.ctx.get("tracing")
        claimed_ns = time.time_ns() if tracing is not None else 0
        try:
            decoded = self.decode(raw)
            name, args, kwargs, start_try = decoded["f"], decoded["a"], decoded["k"], decoded["t"]
            ctx["enqueued_ms"] = int(decoded["et"]) if decoded.get("et") else None
            function = self.functions[name]
        except Exception as exc:  # the decoder never raises; this guards against our own bugs
            await settle_escaped_error(ctx, raw, None, exc)
            return JobEnd(Ending.FINISH, failed=True)
        if tracing is not None:
            spans = tracing.start_job(
                job_id=job.job_id,
                job_try=ctx["job_try"],
                function=name,
                argument=args[0] if args else None,
                raw=raw,
                carried=ctx.get("trace_context"),
                claimed_ns=claimed_ns,
                decoded_ns=time.time_ns(),
                enqueued_ms=ctx.get("enqueued_ms"),
            )
            if spans is not None:  # None: its trace is not sampled
                ctx["trace"] = spans
        if isinstance(start_try, int) and start_try > job.job_try:
            ctx["job_try"] = start_try  # a producer may start a job at a later try (arq's `t`)
        tries = function.max_tries or self.max_tries
        if ctx["job_try"] > tries:
            reason = (
                f"gave up after {ctx['job_try']} tries: its earlier tries crashed or timed out their worker;"
                " check the worker logs around its job id, then replay it"
            )
            await give_up_on_job(ctx, raw, name, reason)
            return JobEnd(Ending.FINISH, failed=True)
        try:
            if self.on_job_start is not None:
                await self.on_job_start(cast(Any, ctx))
            async with asyncio.timeout(function.timeout_s or self.timeout_s):
                result = await function.coroutine(cast(Any, ctx), *args, **kwargs)
            if self.on_job_end is not None:
                await self.on_job_end(cast(Any, ctx))
        except (Retry, asyncio.CancelledError):
            raise
        except Exception as exc:
            await settle_escaped_error(ctx, raw, name, exc)
            return JobEnd(Ending.FINISH, failed=True)
        return JobEnd(Ending.FINISH, result=result if isinstance(result, str) else None)
