"""The arq job functions: validate (already done by the decoder) → apply → classify the result.

Each job ends in one of three ways: the command took effect (or was a duplicate), arq is asked
to run it again later (`Retry`, for transient and not-yet failures within their budgets), or
it becomes a dead letter (the last two: worker/pipeline/job_endings.py). Nothing else: no
exception escapes to arq, which would drop the job. Where a job that asked for outcomes
(`k.outcome_ttl`) ends, its commands' outcomes are written (`worker.pipeline.outcomes`); a job
that did not ask builds nothing for them.

A job written to a contract version above `TASKLINE_CONTRACT_VERSION` is dead-lettered before
anything else, with a reason that says so (the decoder already refused versions this code does
not know).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from taskline_producer.contract import Command, is_in_future

from worker.pipeline.deliveries import BulkDelivery, Delivery, Rejected
from worker.pipeline.failures import Kind, classify_exception, classify_outcome
from worker.pipeline.job_endings import dead_letter_job, retry_or_dead_letter, write_dead_letter
from worker.pipeline.job_options import JobOptions, contract_too_new
from worker.pipeline.outcomes import OutcomeReport, OutcomeState
from worker.pipeline.runtime import JobContext, Runtime

__all__ = ["apply_commands_job", "command_job", "give_up_on_job", "reject_job", "settle_escaped_error"]


async def command_job(ctx: JobContext, delivery: Delivery) -> str:
    """create_task, update_task and complete_task: one command, applied with group commit."""
    runtime = ctx["runtime"]
    command = delivery.command
    options = delivery.options
    signed_by = delivery.signed_by
    report = None
    if options.outcome_ttl is not None:
        report = OutcomeReport(
            options.outcome_ttl, ctx["job_id"], (str(command.command_id),), enqueued_ms=ctx.get("enqueued_ms")
        )
    started = runtime.clock()
    with runtime.metrics.in_progress(command.function):
        refusal = (
            _version_reason(runtime, options)
            or _job_id_reason(ctx["job_id"], command)
            or _future_reason(runtime, command)
        )
        if refusal:
            log = _command_log(ctx, command)
            return await dead_letter_job(
                ctx, log, delivery.raw, command.function, Kind.PERMANENT, refusal, report, signed_by=signed_by
            )
        trace = ctx.get("trace")
        try:
            async with asyncio.timeout(runtime.settings.job_timeout):
                # Only the first try waits in the worker for a missing task's create; a not-yet
                # retry has waited already (worker/pipeline/waiting_room.py).
                may_wait = ctx["job_try"] == 1
                if trace is None:  # the call of a worker that does not trace stays as it was
                    outcome = await runtime.committer.apply(command, signed_by, may_wait=may_wait)
                else:
                    outcome = await runtime.committer.apply(command, signed_by, may_wait=may_wait, trace=trace)
        except Exception as exc:
            kind, reason = classify_exception(exc)
            outage = runtime.database_failed(exc)
            log = _command_log(ctx, command)
            return await retry_or_dead_letter(
                ctx, log, delivery.raw, command.function, kind, reason, report, quiet=outage, signed_by=signed_by
            )
        runtime.database_answered()
        if trace is not None:
            trace.outcome(outcome.value)
        failure = classify_outcome(outcome)
        if failure is not None:
            return await retry_or_dead_letter(
                ctx, _command_log(ctx, command), delivery.raw, command.function, *failure, report, signed_by=signed_by
            )
    runtime.metrics.processed(command.function, outcome.value, runtime.clock() - started, command.issued_at)
    if runtime.log_each_command:
        _command_log(ctx, command).debug("command applied", outcome=outcome.value)
    if report is not None:
        report.add_job(cast(OutcomeState, outcome.value))  # applied or duplicate: what took effect
        await runtime.outcome_writer.write(report)
    return outcome.value


def _command_log(ctx: JobContext, command: Command) -> Any:
    """The job's logger, bound to its command; built only when something is logged (not per job)."""
    return ctx["runtime"].log.bind(
        job_id=ctx["job_id"],
        command_id=str(command.command_id),
        task_id=str(command.task_id),
        function=command.function,
        **{"try": ctx["job_try"]},
    )


async def apply_commands_job(ctx: JobContext, bulk: BulkDelivery) -> str:
    """apply_commands: many commands in few transactions; each keeps its own fate.

    Invalid items and refused commands are dead-lettered one by one; commands that must wait
    (not yet) or hit a transient error are re-enqueued as their own single-command jobs, so
    they retry on their own schedule without holding back the rest."""
    runtime = ctx["runtime"]
    log = runtime.log.bind(job_id=ctx["job_id"], function="apply_commands", **{"try": ctx["job_try"]})
    options = bulk.options
    signed_by = bulk.signed_by
    report = None
    if options.outcome_ttl is not None:
        report = OutcomeReport(
            options.outcome_ttl, ctx["job_id"], _bulk_command_ids(bulk), enqueued_ms=ctx.get("enqueued_ms")
        )
    too_new = _version_reason(runtime, options)
    if too_new:
        return await dead_letter_job(
            ctx, log, bulk.raw, "apply_commands", Kind.PERMANENT, too_new, report, signed_by=signed_by
        )
    for index, rejected in bulk.rejected:
        await write_dead_letter(
            ctx,
            log,
            index,
            rejected.command_id,
            rejected.function,
            rejected.raw,
            Kind.PERMANENT,
            rejected.reason,
            signed_by=rejected.signed_by,
        )
        if report is not None and rejected.command_id is not None:  # a UUID, or None (decode.py)
            report.add(rejected.command_id, "dead_letter", rejected.reason)
    commands: list[tuple[int, Command]] = []
    now = datetime.now(UTC)
    for index, command in bulk.commands:
        reason = _future_reason(runtime, command, now)
        if reason:
            single = runtime.single_job(command, options, signed_by)
            await write_dead_letter(
                ctx,
                log,
                index,
                str(command.command_id),
                command.function,
                single,
                Kind.PERMANENT,
                reason,
                signed_by=signed_by,
            )
            if report is not None:
                report.add(str(command.command_id), "dead_letter", reason)
        else:
            commands.append((index, command))
    if report is not None:
        report.command_ids = [str(command.command_id) for _, command in commands]
    if not commands:
        if report is not None:
            await runtime.outcome_writer.write(report)
        return "dead-lettered"
    started = runtime.clock()
    trace = ctx.get("trace")
    with runtime.metrics.in_progress("apply_commands"):
        batch = [command for _, command in commands]
        if trace is None:
            results = await runtime.committer.apply_many(batch, signed_by)
        else:
            results = await runtime.committer.apply_many(batch, signed_by, trace=trace)
    if all(isinstance(result, BaseException) for result in results):
        # Nothing was applied (the database is away): retry the whole job, or dead-letter it.
        error: BaseException = results[0]  # type: ignore[assignment]
        kind, reason = classify_exception(error)
        outage = runtime.database_failed(error)
        return await retry_or_dead_letter(
            ctx, log, bulk.raw, "apply_commands", kind, reason, report, quiet=outage, signed_by=signed_by
        )
    runtime.database_answered()
    requeue: list[Command] = []
    requeue_in_s = runtime.policy.delay(1)
    runtime.metrics.bulk_applied(runtime.clock() - started)
    took_effect: dict[tuple[str, str], list[datetime]] = {}
    for (index, command), result in zip(commands, results, strict=True):
        if isinstance(result, BaseException):
            kind, reason = classify_exception(result)
        else:
            failure = classify_outcome(result)
            if failure is None:
                took_effect.setdefault((command.function, result.value), []).append(command.issued_at)
                if report is not None:
                    report.add(str(command.command_id), cast(OutcomeState, result.value))
                continue
            kind, reason = failure
        if kind is Kind.PERMANENT:
            single = runtime.single_job(command, options, signed_by)
            await write_dead_letter(
                ctx, log, index, str(command.command_id), command.function, single, kind, reason, signed_by=signed_by
            )
            if report is not None:
                report.add(str(command.command_id), "dead_letter", reason)
        else:
            requeue.append(command)
            if report is not None:
                report.add(str(command.command_id), "retrying", reason, requeue_in_s)
    for (function, outcome), issued_ats in took_effect.items():
        runtime.metrics.processed_in_bulk(function, outcome, issued_ats)
    if report is not None:
        # Before the requeue: a requeued command's own job must not finish before its `retrying`.
        await runtime.outcome_writer.write(report)
    if requeue:
        await runtime.requeue(
            requeue,
            defer_s=requeue_in_s,
            options=options.as_k(),
            signed_by=signed_by,
            trace=ctx.get("trace_context"),
        )
        runtime.metrics.retried("apply_commands", "requeued", len(requeue))
    return f"applied {len(commands) - len(requeue)}, requeued {len(requeue)}"


def _bulk_command_ids(bulk: BulkDelivery) -> list[str]:
    """Every command id of a bulk job that outcomes can be recorded under."""
    ids = [str(command.command_id) for _, command in bulk.commands]
    ids.extend(rejected.command_id for _, rejected in bulk.rejected if rejected.command_id is not None)
    return ids


async def reject_job(ctx: JobContext, rejected: Rejected) -> str:
    """Jobs the decoder refused: dead-lettered on the first attempt, never retried."""
    runtime = ctx["runtime"]
    log = runtime.log.bind(job_id=ctx["job_id"], function=rejected.function, **{"try": ctx["job_try"]})
    report = None
    if rejected.outcome_ttl is not None and rejected.command_id is not None:
        report = OutcomeReport(rejected.outcome_ttl, ctx["job_id"], (rejected.command_id,))
    return await dead_letter_job(
        ctx, log, rejected.raw, rejected.function, Kind.PERMANENT, rejected.reason, report, signed_by=rejected.signed_by
    )


async def settle_escaped_error(ctx: JobContext, raw: bytes, function: str | None, exc: BaseException) -> str:
    """An exception that escaped a job function (a bug, or a timeout around it): classified by
    what it is, then retried within its budget (raises `Retry`) or dead-lettered; never dropped."""
    runtime = ctx["runtime"]
    kind, reason = classify_exception(exc)
    log = runtime.log.bind(job_id=ctx["job_id"], function=function, **{"try": ctx["job_try"]})
    return await retry_or_dead_letter(ctx, log, raw, function, kind, reason)


async def give_up_on_job(ctx: JobContext, raw: bytes | None, function: str | None, reason: str) -> str:
    """Dead-letter a job that can never run (its key expired, or it used up its tries); raises
    `Retry` when the dead letter cannot be written yet."""
    runtime = ctx["runtime"]
    log = runtime.log.bind(job_id=ctx["job_id"], function=function, **{"try": ctx["job_try"]})
    return await dead_letter_job(ctx, log, raw, function, Kind.PERMANENT, reason)


def _job_id_reason(job_id: str, command: Command) -> str | None:
    """A command job must be enqueued under its command_id: that is what makes the duplicate
    check at enqueue (EXISTS arq:job:<id>) refuse a second copy of the same command."""
    command_id = str(command.command_id)
    if job_id == command_id:
        return None
    return (
        f"the job id {job_id!r} is not the command's command_id {command_id}: enqueue each command"
        " under its command_id (docs/contract.md), or a second copy is not refused at enqueue"
    )


def _version_reason(runtime: Runtime, options: JobOptions) -> str | None:
    """Why the job's contract version is refused (held back by TASKLINE_CONTRACT_VERSION), if it is."""
    accepted = runtime.settings.contract_version
    return contract_too_new(options.contract, accepted) if options.contract > accepted else None


def _future_reason(runtime: Runtime, command: Command, now: datetime | None = None) -> str | None:
    tolerance = timedelta(seconds=runtime.settings.future_tolerance)
    if is_in_future(command, now or datetime.now(UTC), tolerance):
        return (
            f"issued_at {command.issued_at.isoformat()} is more than {tolerance} ahead of the worker's"
            " clock; check the producer's clock (or raise TASKLINE_FUTURE_TOLERANCE)"
        )
    return None
