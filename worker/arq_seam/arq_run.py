"""arq 0.28's `Worker.run_job`, minus its opening round trip.

arq starts every job with a MULTI/EXEC of its own (GET the job, INCR and EXPIRE its try
counter), right after the four round trips that claimed it. taskline's claim script
(`worker.arq_seam.claim`) does those three commands inside the claim, atomically, for every job it
claims, so the job starts with its payload and try number in hand. What follows that opening
is arq's code, unchanged in what it does (arq is pinned to 0.28.*, see pyproject.toml): the
try limit, the function lookup, the timeout, Retry and cancellation, and `finish_job` /
`finish_failed_job`, which `TasklineWorker` overrides.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from arq.constants import keep_cronjob_progress, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, truncate
from arq.worker import JobExecutionFailed, Retry, RetryJob

if TYPE_CHECKING:
    from arq.worker import Worker

__all__ = ["run_claimed_job"]

logger = logging.getLogger("arq.worker")  # arq's own logger: the same lines, under the same name
_NO_RESULT = object()


async def run_claimed_job(worker: Worker, job_id: str, score: int, payload: bytes | None, job_try: int) -> None:
    """Run a job the claim script claimed, with the payload and try number it fetched."""
    self = worker
    start_ms = timestamp_ms()
    v = payload
    function_name, enqueue_time_ms = "<unknown>", 0
    args: tuple[Any, ...] = ()
    kwargs: dict[Any, Any] = {}

    async def job_failed(exc: BaseException) -> None:
        self.jobs_failed += 1
        result_data_ = serialize_result(
            function=function_name,
            args=args,
            kwargs=kwargs,
            job_try=job_try,
            enqueue_time_ms=enqueue_time_ms,
            success=False,
            result=exc,
            start_ms=start_ms,
            finished_ms=timestamp_ms(),
            ref=f"{job_id}:{function_name}",
            serializer=self.job_serializer,
            queue_name=self.queue_name,
            job_id=job_id,
        )
        await asyncio.shield(self.finish_failed_job(job_id, result_data_))

    if not v:
        logger.warning("job %s expired", job_id)
        return await job_failed(JobExecutionFailed("job expired"))

    try:
        function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
            v, deserializer=self.job_deserializer
        )
    except SerializationError as e:
        logger.exception("deserializing job %s failed", job_id)
        return await job_failed(e)

    try:
        function = self.functions[function_name]
    except KeyError:
        logger.warning("job %s, function %r not found", job_id, function_name)
        return await job_failed(JobExecutionFailed(f"function {function_name!r} not found"))

    if hasattr(function, "next_run"):
        ref = function_name
        keep_in_progress: float | None = keep_cronjob_progress
    else:
        ref = f"{job_id}:{function_name}"
        keep_in_progress = None

    if enqueue_job_try and enqueue_job_try > job_try:
        job_try = enqueue_job_try
        await self.pool.setex(retry_key_prefix + job_id, 88400, str(job_try))

    max_tries = self.max_tries if function.max_tries is None else function.max_tries
    if job_try > max_tries:
        t = (timestamp_ms() - enqueue_time_ms) / 1000
        logger.warning("%6.2fs ! %s max retries %d exceeded", t, ref, max_tries)
        self.jobs_failed += 1
        result_data = serialize_result(
            function_name,
            args,
            kwargs,
            job_try,
            enqueue_time_ms,
            False,
            JobExecutionFailed(f"max {max_tries} retries exceeded"),
            start_ms,
            timestamp_ms(),
            ref,
            self.queue_name,
            job_id=job_id,
            serializer=self.job_serializer,
        )
        return await asyncio.shield(self.finish_failed_job(job_id, result_data))

    result: Any = _NO_RESULT
    exc_extra = None
    finish = False
    timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
    incr_score: int | None = None
    job_ctx = {
        "job_id": job_id,
        "job_try": job_try,
        "enqueue_time": ms_to_datetime(enqueue_time_ms),
        "score": score,
    }
    ctx = {**self.ctx, **job_ctx}

    if self.on_job_start:
        await self.on_job_start(ctx)

    start_ms = timestamp_ms()
    success = False
    result_str = ""
    try:
        s = args_to_string(args, kwargs)
        extra = f" try={job_try}" if job_try > 1 else ""
        if (start_ms - score) > 1200:
            extra += f" delayed={(start_ms - score) / 1000:0.2f}s"
        logger.info("%6.2fs → %s(%s)%s", (start_ms - enqueue_time_ms) / 1000, ref, s, extra)
        self.job_tasks[job_id] = task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))

        try:
            result = await asyncio.wait_for(task, timeout_s)
        except (Exception, asyncio.CancelledError) as e:
            exc_extra = getattr(e, "extra", None)
            if callable(exc_extra):
                exc_extra = exc_extra()
            raise
        else:
            result_str = "" if result is None or not self.log_results else truncate(repr(result))
        finally:
            del self.job_tasks[job_id]

    except (Exception, asyncio.CancelledError) as e:
        finished_ms = timestamp_ms()
        t = (finished_ms - start_ms) / 1000
        if self.retry_jobs and isinstance(e, Retry):
            incr_score = e.defer_score
            logger.info("%6.2fs ↻ %s retrying job in %0.2fs", t, ref, (e.defer_score or 0) / 1000)
            if e.defer_score:
                incr_score = e.defer_score + (timestamp_ms() - score)
            self.jobs_retried += 1
        elif job_id in self.aborting_tasks and isinstance(e, asyncio.CancelledError):
            logger.info("%6.2fs ⊘ %s aborted", t, ref)
            result = e
            finish = True
            self.aborting_tasks.remove(job_id)
            self.jobs_failed += 1
        elif self.retry_jobs and isinstance(e, (asyncio.CancelledError, RetryJob)):
            logger.info("%6.2fs ↻ %s cancelled, will be run again", t, ref)
            self.jobs_retried += 1
        else:
            logger.exception("%6.2fs ! %s failed, %s: %s", t, ref, e.__class__.__name__, e, extra={"extra": exc_extra})
            result = e
            finish = True
            self.jobs_failed += 1
    else:
        success = True
        finished_ms = timestamp_ms()
        logger.info("%6.2fs ← %s ● %s", (finished_ms - start_ms) / 1000, ref, result_str)
        finish = True
        self.jobs_complete += 1

    keep_result_forever = (
        self.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
    )
    result_timeout_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
    result_data = None
    if result is not _NO_RESULT and (keep_result_forever or result_timeout_s > 0):
        result_data = serialize_result(
            function_name,
            args,
            kwargs,
            job_try,
            enqueue_time_ms,
            success,
            result,
            start_ms,
            finished_ms,
            ref,
            self.queue_name,
            job_id=job_id,
            serializer=self.job_serializer,
        )

    if self.on_job_end:
        await self.on_job_end(ctx)

    await asyncio.shield(
        self.finish_job(
            job_id,
            finish,
            result_data,
            result_timeout_s,
            keep_result_forever,
            incr_score,
            keep_in_progress,
        )
    )

    if self.after_job_end:
        await self.after_job_end(ctx)
    return None
