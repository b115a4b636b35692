"""Reading the trace context producers write beside their jobs, for a worker that traces.

A producer with a trace to pass on writes `taskline:trace:<job id>` (keys.trace_key) with the job,
in the same atomic step and with the same expiry (taskline_producer/wire.py); the job's own bytes
do not change, so every worker runs it. A worker that traces reads the trace keys of the jobs it
has just claimed in one MGET per claim; a worker that does not trace never reads them (not one
Redis command more). Either way the keys are deleted with the job's other keys when it finishes
(worker/arq_seam/bookkeeping.py), and otherwise expire with the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError
from taskline_producer import keys

__all__ = ["read_trace_contexts"]


async def read_trace_contexts(redis: Any, job_ids: Sequence[str], log: Any) -> list[str | None]:
    """Each job's trace key value (the W3C trace context as JSON), None where it has none. When
    Redis fails to answer, the jobs (already claimed) still run, each in a trace of its own: a
    trace is never a reason to hold a job back."""
    try:
        values = await redis.mget([keys.trace_key(job_id) for job_id in job_ids])
    except (RedisError, OSError) as exc:
        log.info("could not read the claimed jobs' trace keys; they run in traces of their own", error=repr(exc))
        return [None] * len(job_ids)
    return [value.decode(errors="replace") if isinstance(value, bytes) else value for value in values]
