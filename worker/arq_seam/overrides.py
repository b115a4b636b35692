"""taskline's arq Worker: arq 0.28's loop with its per-job costs cut and its silent drops closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from arq.constants import abort_jobs_ss
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from taskline_producer.keys import (
    IN_PROGRESS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    RETRY_KEY_PREFIX,
    TRANSIENT_KEY_PREFIX,
    WAKE_KEY_SUFFIX,
)

from worker.arq_seam.arq_run import run_claimed_job
from worker.arq_seam.claim import CLAIM_SCRIPT, Claimed, parse_claimed
from worker.pipeline.decode import BULK_PREFIX
from worker.pipeline.runtime import Runtime

__all__ = ["REDIS_LOST", "TasklineWorker"]

REDIS_LOST: tuple[type[BaseException], ...] = (OSError, RedisConnectionError, RedisTimeoutError, WatchError)
"""What arq's loop raises when Redis goes away. WatchError too: redis-py raises it instead of a
ConnectionError when the connection drops while arq WATCHes a key. Supervisors reconnect on these."""


class TasklineWorker(Worker):
    """arq's Worker with its per-job costs cut and its silent drops closed (arq 0.28 seams):

    * jobs are claimed many per round trip, each fetched and its try counted in the same call
      (arq claims each with four round trips, one after the other, and starts it with a fifth);
    * jobs finishing together share one MULTI/EXEC for arq's bookkeeping;
    * at most `bulk_concurrency` bulk jobs are decoded and applied at once (memory);
    * an idle worker blocks on the queue's wake-up list instead of sleeping `poll_delay`, and a
      saturated one polls again as soon as a slot frees;
    * every job arq itself gives up on becomes a dead letter.
    """

    idle_wait_s = 0.0
    """How long an idle poll waits for a wake-up token before polling again (TASKLINE_POLL_DELAY);
    0 (burst mode in tests) polls without waiting."""

    bulk_concurrency = 4
    """How many apply_commands jobs are decoded and applied at once (TASKLINE_BULK_CONCURRENCY)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bulk_slots: asyncio.Semaphore | None = None
        self._slot_freed = asyncio.Event()
        self._claim: Any = None
        self._finishing: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._finisher: asyncio.Task[None] | None = None

    async def _claim_due(self, count: int) -> int:
        """Claim up to the free slots among the first `count` due jobs, in one round trip, and
        start them; returns how many were claimed."""
        free = min(self.max_jobs - self.job_counter, count)
        if free <= 0:
            return 0
        if self._claim is None:
            self._claim = self.pool.register_script(CLAIM_SCRIPT)
        # With aborts enabled, arq's run_job must do its own opening (it also reads the abort set).
        fetch = not self.allow_abort_jobs
        reply = await self._claim(
            keys=[self.queue_name],
            args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), free, self.queue_read_limit, int(fetch)],
        )
        claimed = parse_claimed(reply, fetched=fetch)
        for job in claimed:
            await self.sem.acquire()
            self.job_counter += 1
            run = self.run_job(job.job_id, job.score) if job.job_try is None else self._run_claimed(job)
            task = self.loop.create_task(run)
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job.job_id] = task
        return len(claimed)

    async def _run_claimed(self, job: Claimed) -> None:
        assert job.job_try is not None
        if job.payload is None or not job.payload.startswith(BULK_PREFIX):
            return await run_claimed_job(self, job.job_id, job.score, job.payload, job.job_try)
        # A bulk job holds up to a thousand commands once decoded: only `bulk_concurrency` of
        # them are decoded and applied at once; the others wait here, before their timeout runs.
        if self._bulk_slots is None:
            self._bulk_slots = asyncio.Semaphore(self.bulk_concurrency)
        async with self._bulk_slots:
            return await run_claimed_job(self, job.job_id, job.score, job.payload, job.job_try)

    async def _poll_iteration(self) -> None:
        # arq's Worker._poll_iteration (arq 0.28), with its ZRANGEBYSCORE + per-job claims
        # replaced by one claim script, and its blind sleep by a wait for work.
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            remaining = self.max_burst_jobs - self._jobs_started()
            if remaining < 1:
                return
            count = min(remaining, count)
        claimed = 0
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            claimed = await self._claim_due(count)
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # arq does this too: an error in run_job surfaces here
        await self.heart_beat()
        if not self.idle_wait_s:
            return
        if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
            # Stopping, or every slot busy: poll again when a job ends (arq's poll loop itself
            # no longer sleeps, so this wait is what keeps a stopping worker from spinning).
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), self.idle_wait_s)
        elif claimed == 0:
            # Nothing claimable: wait for the enqueue script's wake-up token (or the poll delay,
            # which also bounds how late a deferred retry starts) instead of sleeping blind.
            await self.pool.execute_command(  # type: ignore[no-untyped-call]
                "BLPOP", self.queue_name + WAKE_KEY_SUFFIX, self.idle_wait_s
            )

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's bookkeeping after a job, for all jobs finishing together in one MULTI/EXEC."""
        future: asyncio.Future[None] = self.loop.create_future()
        self._finishing.append(
            ((job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress), future)
        )
        if self._finisher is None or self._finisher.done():
            self._finisher = self.loop.create_task(self._flush_finished())
        await future

    async def _flush_finished(self) -> None:
        while self._finishing:
            batch, self._finishing = self._finishing, []
            try:
                async with self.pool.pipeline(transaction=True) as pipe:
                    for args, _ in batch:
                        self._finish_in(pipe, *args)
                    await pipe.execute()
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _finish_in(
        self,
        pipe: Any,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        # The same writes as arq's Worker.finish_job (arq 0.28), queued on a shared pipeline.
        delete_keys = []
        in_progress_key = IN_PROGRESS_KEY_PREFIX + job_id
        if keep_in_progress is None:
            delete_keys.append(in_progress_key)
        else:
            pipe.pexpire(in_progress_key, int(keep_in_progress * 1000))
        if finish:
            if result_data:
                expire = None if keep_result_forever else result_timeout_s
                pipe.set(RESULT_KEY_PREFIX + job_id, result_data, px=int(expire * 1000) if expire else None)
            delete_keys += [RETRY_KEY_PREFIX + job_id, JOB_KEY_PREFIX + job_id, TRANSIENT_KEY_PREFIX + job_id]
            if self.allow_abort_jobs:
                pipe.zrem(abort_jobs_ss, job_id)
            pipe.zrem(self.queue_name, job_id)
        elif incr_score:
            pipe.zincrby(self.queue_name, incr_score, job_id)
        if delete_keys:
            pipe.delete(*delete_keys)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        runtime: Runtime | None = self.ctx.get("runtime")
        if runtime is not None:
            raw = await self.pool.get(JOB_KEY_PREFIX + job_id)
            reason = _arq_reason(result_data)
            try:
                await runtime.dead_letter(
                    job_id=job_id,
                    function=None,
                    payload=raw,
                    reason=reason,
                    category="arq",
                    attempts=int(await self.pool.get(RETRY_KEY_PREFIX + job_id) or 1),
                )
            except Exception:
                # Keep the job in Redis: its in-progress key expires and arq tries again.
                runtime.log.exception("could not dead-letter a job arq gave up on", job_id=job_id)
                return
            runtime.log.warning("dead-lettered a job arq gave up on", job_id=job_id, reason=reason)
        await super().finish_failed_job(job_id, result_data)
        await self.pool.delete(TRANSIENT_KEY_PREFIX + job_id)


def _arq_reason(result_data: bytes | None) -> str:
    try:
        result = json.loads(result_data) if result_data else {}
        detail = str(result.get("r", "")) or "no detail"
    except ValueError:
        detail = "no detail"
    if "expired" in detail:
        return "the job's key expired in Redis before a worker ran it (job TTL); the payload is gone"
    if "retries exceeded" in detail:
        return f"arq gave up: {detail} (the job kept crashing or timing out its worker)"
    return f"arq gave up: {detail}"
