"""The Redis side of a job's end, for every job ending at the same moment in one MULTI/EXEC.

What each ending writes (arq's wire format, so arq's own client and tools read the queue the
same way):

* FINISH: the job leaves the queue, and its job key, try counter, claim, transient-failure
  counter and trace key (keys.trace_key, written beside a traced job by its producer) are
  deleted in the same DEL (`keep_result=0`: taskline keeps outcomes in PostgreSQL, not in Redis);
* DEFER: its score becomes now + the delay, then its claim is dropped;
* RELEASE: its claim is dropped;
* LEAVE: nothing.

Under load dozens of jobs finish within a millisecond of one another; one transaction for all of
them instead of one each is most of what the worker saves over arq's bookkeeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskline_producer import keys

from worker.arq_seam.job_runner import Ending, JobEnd

__all__ = ["Bookkeeper"]


class Bookkeeper:
    def __init__(self, redis: Any, queue: str) -> None:
        self.redis = redis
        self.queue = queue
        self._waiting: list[tuple[str, JobEnd, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, job_id: str, end: JobEnd) -> None:
        """Write the job's end, together with the others ending now; raises what Redis raised."""
        if end.ending is Ending.LEAVE:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((job_id, end, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    now_ms = int(time.time() * 1000)
                    finished = [job_id for job_id, end, _ in batch if end.ending is Ending.FINISH]
                    if finished:
                        # One ZREM and one DEL for all the finished jobs, not two commands each.
                        pipe.zrem(self.queue, *finished)
                        pipe.delete(*[key for job_id in finished for key in _finished_keys(job_id)])
                    for job_id, end, _ in batch:
                        if end.ending is not Ending.FINISH:
                            self._queue_writes(pipe, job_id, end, now_ms)
                    await pipe.execute()
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _queue_writes(self, pipe: Any, job_id: str, end: JobEnd, now_ms: int) -> None:
        claim = keys.in_progress_key(job_id)
        if end.ending is Ending.DEFER:
            pipe.zadd(self.queue, {job_id: now_ms + end.defer_ms}, xx=True)
            pipe.delete(claim)
        else:
            pipe.delete(claim)


def _finished_keys(job_id: str) -> tuple[str, str, str, str, str]:
    """What a finished job leaves: its claim, its job key, its try counter, its transient counter,
    its trace key (whether or not this worker traces: one DEL either way)."""
    return (
        keys.in_progress_key(job_id),
        keys.job_key(job_id),
        keys.retry_key(job_id),
        keys.transient_key(job_id),
        keys.trace_key(job_id),
    )
