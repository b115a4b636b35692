"""What a recording producer sent, and the assertions a service's tests make about it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from taskline_producer.contract import COMMAND_MODELS
from taskline_producer.signing import SigningKey
from taskline_producer.testing.inspection import (
    DEFAULT_FUTURE_TOLERANCE_S,
    DEFAULT_MAX_BULK_PAYLOAD_BYTES,
    SentJob,
    inspect_job,
)
from taskline_producer.testing.matching import SentCommand, check_field_names, describe, differences
from taskline_producer.testing.memory_redis import EnqueueAttempt

__all__ = ["ANY_JOB", "Recording"]

ANY_JOB: Final[Any] = object()
"""A job-level filter (`signed_by`, `outcome_ttl`) that is not checked."""
_SHOWN: Final = 20


class Recording:
    """Every job a recording producer sent, in order, each checked as a worker would check it."""

    def __init__(
        self,
        *,
        signing_key: SigningKey | None = None,
        max_payload_bytes: int,
        max_bulk_payload_bytes: int = DEFAULT_MAX_BULK_PAYLOAD_BYTES,
        future_tolerance_s: float | None = DEFAULT_FUTURE_TOLERANCE_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.jobs: list[SentJob] = []
        self.signing_key = signing_key
        self.max_payload_bytes = max_payload_bytes
        self.max_bulk_payload_bytes = max_bulk_payload_bytes
        self.future_tolerance_s = future_tolerance_s
        self.clock = clock

    def record(self, attempt: EnqueueAttempt) -> None:
        """Keep one enqueue attempt; raises `WouldBeRefused` when a worker would refuse the job."""
        job = inspect_job(
            attempt.raw,
            job_id=attempt.job_id,
            queue=attempt.queue,
            queued=attempt.queued,
            signing_key=self.signing_key,
            now=self.clock() if self.clock else None,
            max_payload_bytes=self.max_payload_bytes,
            max_bulk_payload_bytes=self.max_bulk_payload_bytes,
            future_tolerance_s=self.future_tolerance_s,
        )
        self.jobs.append(job)

    def clear(self) -> None:
        self.jobs.clear()

    # -- queries ---------------------------------------------------------------------------------

    def commands(
        self,
        function: str | None = None,
        /,
        *,
        queued: bool | None = True,
        signed_by: Any = ANY_JOB,
        outcome_ttl: Any = ANY_JOB,
        **fields: Any,
    ) -> list[SentCommand]:
        """The sent commands that match, in the order they were sent (bulk items in their order).

        `function`: create_task, update_task or complete_task (None: any). `queued`: True (the
        default) only the jobs Redis took, False only those it refused as duplicates, None both.
        `signed_by` (a key id, or None for unsigned) and `outcome_ttl` filter by the job."""
        if function is not None and function not in COMMAND_MODELS:
            raise ValueError(f"{function!r} is not a command function; use one of {', '.join(COMMAND_MODELS)}")
        check_field_names(function, fields)
        return [
            sent for sent in self._candidates(function, queued, signed_by, outcome_ttl) if not differences(sent, fields)
        ]

    def _candidates(
        self, function: str | None, queued: bool | None, signed_by: Any, outcome_ttl: Any
    ) -> list[SentCommand]:
        found: list[SentCommand] = []
        for job in self.jobs:
            if queued is not None and job.queued is not queued:
                continue
            if signed_by is not ANY_JOB and job.signed_by != signed_by:
                continue
            if outcome_ttl is not ANY_JOB and job.outcome_ttl != outcome_ttl:
                continue
            found.extend(SentCommand(c, job) for c in job.commands if function is None or c.function == function)
        return found

    # -- assertions ------------------------------------------------------------------------------

    def assert_sent(
        self,
        function: str | None = None,
        /,
        *,
        count: int | None = None,
        queued: bool | None = True,
        signed_by: Any = ANY_JOB,
        outcome_ttl: Any = ANY_JOB,
        **fields: Any,
    ) -> SentCommand:
        """Assert that a matching command was sent (exactly `count` of them, when given) and
        return the last one sent. The failure names what was expected and lists what was sent."""
        found = self.commands(function, queued=queued, signed_by=signed_by, outcome_ttl=outcome_ttl, **fields)
        if found and (count is None or len(found) == count):
            return found[-1]
        what = function or "command"
        wanted = f"a {what}" if count is None else f"exactly {count} {what}"
        raise AssertionError(
            f"expected {wanted}{self._criteria(fields, queued, signed_by, outcome_ttl)} to have been sent;"
            f" found {len(found)}.\n{self._listing(function, fields)}"
        )

    def assert_not_sent(
        self,
        function: str | None = None,
        /,
        *,
        queued: bool | None = True,
        signed_by: Any = ANY_JOB,
        outcome_ttl: Any = ANY_JOB,
        **fields: Any,
    ) -> None:
        """Assert that no matching command was sent; the failure shows the ones that were."""
        found = self.commands(function, queued=queued, signed_by=signed_by, outcome_ttl=outcome_ttl, **fields)
        if found:
            shown = "\n".join(f"  {describe(sent)}" for sent in found[:_SHOWN])
            raise AssertionError(
                f"expected no {function or 'command'}{self._criteria(fields, queued, signed_by, outcome_ttl)}"
                f" to have been sent; {len(found)} {'was' if len(found) == 1 else 'were'}:\n{shown}"
            )

    @staticmethod
    def _criteria(fields: dict[str, Any], queued: bool | None, signed_by: Any, outcome_ttl: Any) -> str:
        parts = [f"{name}={value!r}" for name, value in fields.items()]
        if signed_by is not ANY_JOB:
            parts.append(f"signed_by={signed_by!r}")
        if outcome_ttl is not ANY_JOB:
            parts.append(f"outcome_ttl={outcome_ttl!r}")
        if queued is False:
            parts.append("refused as a duplicate")
        return f" with {', '.join(parts)}" if parts else ""

    def _listing(self, function: str | None, fields: dict[str, Any]) -> str:
        sent = self._candidates(None, None, ANY_JOB, ANY_JOB)
        if not sent:
            return "Nothing was sent."
        lines = [f"{len(sent)} command{'s were' if len(sent) != 1 else ' was'} sent:"]
        for item in sent[:_SHOWN]:
            differing = differences(item, fields) if function in (None, item.function) else None
            lines.append(f"  {describe(item, differing)}")
        if len(sent) > _SHOWN:
            lines.append(f"  … and {len(sent) - _SHOWN} more")
        return "\n".join(lines)
