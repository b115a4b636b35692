"""How a job that did not take effect ends: run again later, or become a dead letter.

`retry_or_dead_letter` asks arq to run the job again (raises `Retry`) while its failure kind's
budget lasts (worker/pipeline/failures.py), else dead-letters it; `dead_letter_job` dead-letters
a job at once; `write_dead_letter` writes one row, for a whole job or one item of a bulk job, and
raises `Retry` when the database cannot take it yet: a job is never dropped. A job that asked for
outcomes has `retrying` or `dead_letter` recorded as it ends.
"""

from __future__ import annotations

from typing import Any

from arq.worker import Retry

from worker.pipeline.dead_letters import cap_reason
from worker.pipeline.failures import Kind
from worker.pipeline.outcomes import OutcomeReport
from worker.pipeline.runtime import JobContext

__all__ = ["dead_letter_job", "retry_or_dead_letter", "write_dead_letter"]


async def retry_or_dead_letter(
    ctx: JobContext,
    log: Any,
    raw: bytes,
    function: str | None,
    kind: Kind,
    reason: str,
    report: OutcomeReport | None = None,
    *,
    quiet: bool = False,
    signed_by: str | None = None,
) -> str:
    """Retry within the budget of its kind (raises `Retry`), else dead-letter. `quiet`: the
    failure is part of an outage already reported once, so each retry is logged at DEBUG.
    `report`: the job asked for outcomes; `retrying` or `dead_letter` is recorded."""
    runtime = ctx["runtime"]
    attempt = ctx["job_try"]
    # The transient budget counts transient failures only: arq's try number also counts the
    # not-yet retries and crashed tries before, which must not use it up.
    used = attempt
    if kind is Kind.TRANSIENT:
        used = await runtime.count_transient_failure(ctx["job_id"], fallback=attempt)
    if runtime.policy.should_retry(kind, used):
        delay = runtime.policy.delay(used)  # transient: backs off from its own first failure
        (log.debug if quiet else log.info)(
            "command will be retried", kind=kind.value, reason=reason, retry_in_s=round(delay, 3)
        )
        runtime.metrics.retried(function or "unknown", kind.value)
        if report is not None:
            report.add_job("retrying", reason, delay)
            await runtime.outcome_writer.write(report)
        if "trace" in ctx:
            ctx["trace"].retry(kind.value, reason, delay)
        raise Retry(defer=delay)
    if kind is Kind.TRANSIENT:
        reason = f"gave up after {used} transient failures ({attempt} tries): {reason}"
    elif kind is Kind.NOT_YET:
        reason = f"gave up after {attempt} tries: {reason}"
    return await dead_letter_job(ctx, log, raw, function, kind, reason, report, signed_by=signed_by)


async def dead_letter_job(
    ctx: JobContext,
    log: Any,
    raw: bytes | None,
    function: str | None,
    kind: Kind,
    reason: str,
    report: OutcomeReport | None = None,
    *,
    signed_by: str | None = None,
) -> str:
    await write_dead_letter(ctx, log, None, None, function, raw, kind, reason, signed_by=signed_by)
    if report is not None:
        report.add_job("dead_letter", reason)
        await ctx["runtime"].outcome_writer.write(report)
    return "dead-lettered"


async def write_dead_letter(
    ctx: JobContext,
    log: Any,
    index: int | None,
    command_id: str | None,
    function: str | None,
    raw: bytes | None,
    kind: Kind,
    reason: str,
    *,
    signed_by: str | None = None,
) -> None:
    """One dead letter row; `signed_by`: the key id the job was signed with (or claims)."""
    runtime = ctx["runtime"]
    job_id = ctx["job_id"] if index is None else (command_id or f"{ctx['job_id']}#{index}")
    reason = cap_reason(reason)  # the row's and the log line's
    try:
        await runtime.dead_letter(
            job_id=job_id,
            function=function,
            payload=raw,
            reason=reason,
            category=kind.value,
            attempts=ctx["job_try"],
            signed_by=signed_by,
        )
    except Exception as exc:
        # The database is away: leave the job in Redis and try again later; never drop it.
        log.warning("could not write the dead letter yet", error=type(exc).__name__)
        raise Retry(defer=runtime.policy.delay(ctx["job_try"])) from exc
    item = {} if index is None else {"item": index, "command_id": command_id, "function": function}
    signer = {} if signed_by is None else {"signed_by": signed_by}
    log.warning("dead-lettered", dead_letter=job_id, kind=kind.value, reason=reason, **item, **signer)
    runtime.metrics.dead_lettered(function or "unknown", kind.value)
    if "trace" in ctx:
        ctx["trace"].dead_letter(kind.value, reason, item=index, command_id=command_id)
