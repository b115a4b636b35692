"""The async client other services embed to publish task commands."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final
from uuid import UUID, uuid4

from redis.asyncio import Redis

from taskline_producer.connection import connect_redis
from taskline_producer.contract import (
    BULK_JOB,
    DEFAULT_MAX_BULK_COMMANDS,
    DEFAULT_QUEUE,
    Command,
    CompleteTask,
    CreateTask,
    UpdateTask,
)
from taskline_producer.outcomes import Outcome, read_outcome, wait_for_outcome
from taskline_producer.receipts import BulkReceipt, Receipt, SendReport
from taskline_producer.signing import SigningKey
from taskline_producer.tracing import send_tracer
from taskline_producer.wire import (
    DEFAULT_JOB_TTL_MS,
    ENQUEUE_FAIR_SCRIPT,
    check_fairness_key,
    default_fairness_key,
    enqueue_arguments,
    envelope,
    epoch_ms,
    fair_turns_from_env,
    job_of_command,
    job_options,
    wire_argument,
)

__all__ = ["TaskProducer"]

_UNSET: Final[Any] = object()
_FROM_ENV: Final[Any] = object()
_SCRIPT_CHUNK = 500  # commands per EVALSHA: bounds how long one script blocks Redis (~1 ms)


def _as_uuid(value: UUID | str | None) -> UUID:
    if value is None:
        return uuid4()
    return value if isinstance(value, UUID) else UUID(value)


class TaskProducer:
    """Publishes commands onto a taskline queue.

    Use `TaskProducer.connect(url)` (and `await producer.close()`, or `async with`), or hand it
    an existing `redis.asyncio.Redis` client, which it then leaves open.

    `signing_key`: every job is signed with it (contract version 3, docs/contract.md "Signed
    jobs"). Not given: the key in TASKLINE_SIGNING_KEY_ID and TASKLINE_SIGNING_SECRET when they
    are set, else none; `None`: unsigned whatever the environment says.

    `fair`: every job carries a fairness key, by default its command's user (`user:<user_id>`),
    and the workers take turns between the keys, so that one user's flood does not hold up the
    others (docs/operations.md "Fair turns"). Each `send*` method takes `fairness_key=` to name
    another (a tenant, a producer). `fair=False`: jobs go straight into the queue, as arq's own
    client sends them, ahead of every lane. Not given: on when TASKLINE_FAIR_TURNS is `1` (or
    `true`), else off, because workers of the releases before fair turns never look at the
    lanes: upgrade every worker first, then turn it on for the producers.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        queue: str = DEFAULT_QUEUE,
        job_ttl_ms: int = DEFAULT_JOB_TTL_MS,
        owns_client: bool = False,
        signing_key: SigningKey | None = _FROM_ENV,
        fair: bool = _FROM_ENV,
    ) -> None:
        self.redis = redis
        self.fair: bool = fair_turns_from_env() if fair is _FROM_ENV else fair
        self.queue = queue
        self.job_ttl_ms = job_ttl_ms
        self.signing_key: SigningKey | None = SigningKey.from_env() if signing_key is _FROM_ENV else signing_key
        self._owns_client = owns_client
        self._enqueue = redis.register_script(ENQUEUE_FAIR_SCRIPT)
        self._tracer = send_tracer()  # None without opentelemetry-api: jobs carry no trace context

    @classmethod
    def connect(cls, redis_url: str, *, queue: str = DEFAULT_QUEUE, **kwargs: Any) -> TaskProducer:
        """A producer with its own connection pool to `redis_url`: redis:// or rediss:// for one
        Redis, redis+sentinel:// or rediss+sentinel:// for the master of a Sentinel group, followed
        across failovers (taskline_producer/connection.py gives the form)."""
        return cls(connect_redis(redis_url), queue=queue, owns_client=True, **kwargs)

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> TaskProducer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- one command at a time -------------------------------------------------------------

    async def create_task(
        self,
        *,
        user_id: int,
        title: str,
        description: str | None = None,
        task_id: UUID | str | None = None,
        command_id: UUID | str | None = None,
        issued_at: datetime | None = None,
        outcome_ttl: int | None = None,
    ) -> Receipt:
        """Queue a create_task; `task_id` and `command_id` are generated when not given."""
        command = CreateTask(
            command_id=_as_uuid(command_id),
            issued_at=issued_at or datetime.now(UTC),
            task_id=_as_uuid(task_id),
            user_id=user_id,
            title=title,
            description=description,
        )
        return await self.send(command, outcome_ttl=outcome_ttl)

    async def update_task(
        self,
        *,
        task_id: UUID | str,
        user_id: int,
        title: str = _UNSET,
        description: str | None = _UNSET,
        command_id: UUID | str | None = None,
        issued_at: datetime | None = None,
        outcome_ttl: int | None = None,
    ) -> Receipt:
        """Queue an update_task; leave `title` or `description` out to keep it, pass
        `description=None` to clear it."""
        changes: dict[str, Any] = {}
        if title is not _UNSET:
            changes["title"] = title
        if description is not _UNSET:
            changes["description"] = description
        command = UpdateTask(
            command_id=_as_uuid(command_id),
            issued_at=issued_at or datetime.now(UTC),
            task_id=_as_uuid(task_id),
            user_id=user_id,
            **changes,
        )
        return await self.send(command, outcome_ttl=outcome_ttl)

    async def complete_task(
        self,
        *,
        task_id: UUID | str,
        user_id: int,
        command_id: UUID | str | None = None,
        issued_at: datetime | None = None,
        outcome_ttl: int | None = None,
    ) -> Receipt:
        """Queue a complete_task."""
        command = CompleteTask(
            command_id=_as_uuid(command_id),
            issued_at=issued_at or datetime.now(UTC),
            task_id=_as_uuid(task_id),
            user_id=user_id,
        )
        return await self.send(command, outcome_ttl=outcome_ttl)

    async def send(
        self, command: Command, *, outcome_ttl: int | None = None, fairness_key: str | None = None
    ) -> Receipt:
        """Queue one already-built command as its own job (job id = command id).

        With `outcome_ttl` (seconds, up to a week) the worker records the command's outcome for
        that long: `await receipt.outcome(timeout=...)`. `fairness_key`: whose turn it takes
        (default: `user:<user_id>`)."""
        options = job_options(outcome_ttl)
        key = self._fairness_key(fairness_key, command.user_id)
        if self._tracer is None:
            queued = await self._send_one(command, options, key)
        else:
            with self._tracer.sending(self.queue, message_id=str(command.command_id)) as trace:
                queued = await self._send_one(command, options, key, trace)
        # A queued job is this send's own: its outcome is the one written for it (a re-send of an
        # applied command: `duplicate`). A refused one waits for the job already in the queue.
        return Receipt(command.command_id, command.task_id, queued > 0, outcome_ttl, self, sent_at_ms=queued or None)

    async def _send_one(self, command: Command, options: dict[str, Any], key: str, trace: str | None = None) -> int:
        """Enqueue one command's job (with its trace key when `trace`); its `et` (epoch ms) when it
        was queued, 0 when refused."""
        now = epoch_ms()
        job = job_of_command(command, now, options, self.signing_key)
        args = enqueue_arguments(now, self.job_ttl_ms, [str(command.command_id), job, key, 1], trace)
        (queued,) = await self._enqueue(keys=[self.queue], args=args)
        return now if queued else 0

    # -- outcomes ----------------------------------------------------------------------------

    async def outcome(
        self,
        command_id: UUID | str,
        *,
        job_id: str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
        sent_at_ms: int | None = None,
    ) -> Outcome:
        """Wait up to `timeout` seconds for a command's final outcome (it must have been sent with
        `outcome_ttl`); raises `OutcomeTimeout` with the last state seen. `job_id`: the
        `apply_commands` job that carried it (default: its own job, the command id).
        `sent_at_ms`: the send's time (a receipt's `sent_at_ms`), so that the outcome of an earlier
        send of the same command is not taken for this one's."""
        command_id = _as_uuid(command_id)
        job_id = job_id or str(command_id)
        return await wait_for_outcome(self.redis, command_id, job_id, timeout, sent_at_ms=sent_at_ms)

    async def status(
        self, command_id: UUID | str, *, job_id: str | None = None, sent_at_ms: int | None = None
    ) -> Outcome:
        """A command's outcome now, final or not (`queued`, `running`, `retrying`, `unknown`...);
        `sent_at_ms` as for `outcome`."""
        command_id = _as_uuid(command_id)
        return await read_outcome(self.redis, command_id, job_id or str(command_id), sent_at_ms=sent_at_ms)

    # -- many commands ---------------------------------------------------------------------

    async def send_many(
        self, commands: Iterable[Command], *, outcome_ttl: int | None = None, fairness_key: str | None = None
    ) -> SendReport:
        """Queue many commands, one job each, pipelining hundreds per round trip.

        Each command is still its own job, deduplicated by its command id. With `outcome_ttl`,
        wait for each with `producer.outcome(command_id, timeout=...)`. `fairness_key`: whose
        turns they take (default: each command's user)."""
        options = job_options(outcome_ttl)
        if fairness_key is not None:
            check_fairness_key(fairness_key)
        if self._tracer is None:
            return await self._send_many(commands, options, fairness_key)
        commands = list(commands)
        with self._tracer.sending(self.queue, message_count=len(commands)) as trace:
            return await self._send_many(commands, options, fairness_key, trace)

    async def _send_many(
        self, commands: Iterable[Command], options: dict[str, Any], fairness_key: str | None, trace: str | None = None
    ) -> SendReport:
        report = SendReport()
        batch: list[Command] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            chunks: list[list[Command]] = []
            for command in commands:
                batch.append(command)
                if len(batch) == _SCRIPT_CHUNK:
                    self._queue_chunk(pipe, batch, options, fairness_key, trace)
                    chunks.append(batch)
                    batch = []
                    if len(chunks) == 20:
                        self._account(report, chunks, await pipe.execute())
                        chunks = []
            if batch:
                self._queue_chunk(pipe, batch, options, fairness_key, trace)
                chunks.append(batch)
            if chunks:
                self._account(report, chunks, await pipe.execute())
        return report

    async def send_bulk(
        self,
        commands: Sequence[Command],
        *,
        job_id: str | None = None,
        outcome_ttl: int | None = None,
        fairness_key: str | None = None,
    ) -> BulkReceipt:
        """Queue up to 1,000 commands as one `apply_commands` job, applied in few transactions.

        Each command keeps its own exactly-once and dead-letter semantics; the job id only
        deduplicates the job itself (default: a fresh UUID). With `outcome_ttl` each command's
        outcome is recorded: `await receipt.outcomes(timeout=...)`. `fairness_key`: whose turns
        it takes, as many as it has commands (default: the user with the most commands in it)."""
        options = job_options(outcome_ttl)
        if not 0 < len(commands) <= DEFAULT_MAX_BULK_COMMANDS:
            raise ValueError(f"send_bulk takes 1 to {DEFAULT_MAX_BULK_COMMANDS} commands, got {len(commands)}")
        items = [{"function": c.function, "command": wire_argument(c)} for c in commands]
        bulk_id = job_id or str(uuid4())
        users = [c.user_id for c in commands]
        key = self._fairness_key(fairness_key, max(set(users), key=users.count))
        cost = len(commands)
        if self._tracer is None:
            queued = await self._send_bulk(bulk_id, items, options, key, cost)
        else:
            with self._tracer.sending(self.queue, message_count=len(items), message_id=bulk_id, bulk=True) as trace:
                queued = await self._send_bulk(bulk_id, items, options, key, cost, trace)
        command_ids = tuple(c.command_id for c in commands)
        return BulkReceipt(
            bulk_id, len(commands), queued > 0, command_ids, outcome_ttl, self, sent_at_ms=queued or None
        )

    def _fairness_key(self, given: str | None, user_id: int) -> str:
        """The job's fairness key: the one given, else its user's; '' (none) for a producer made
        with fair=False."""
        if not self.fair:
            return ""
        return default_fairness_key(user_id) if given is None else check_fairness_key(given)

    async def _send_bulk(
        self,
        bulk_id: str,
        items: list[dict[str, Any]],
        options: dict[str, Any],
        key: str,
        cost: int,
        trace: str | None = None,
    ) -> int:
        """Enqueue one apply_commands job; its `et` when it was queued, 0 when refused."""
        now = epoch_ms()
        job = envelope(BULK_JOB, items, now, options, self.signing_key)
        args = enqueue_arguments(now, self.job_ttl_ms, [bulk_id, job, key, cost], trace)
        (queued,) = await self._enqueue(keys=[self.queue], args=args)
        return now if queued else 0

    def _queue_chunk(
        self, pipe: Any, chunk: list[Command], options: dict[str, Any], fairness_key: str | None, trace: str | None
    ) -> None:
        now = epoch_ms()
        jobs: list[Any] = []
        for command in chunk:
            jobs.append(str(command.command_id))
            jobs.append(job_of_command(command, now, options, self.signing_key))
            jobs.append(self._fairness_key(fairness_key, command.user_id))
            jobs.append(1)
        args = enqueue_arguments(now, self.job_ttl_ms, jobs, trace)
        # EVAL, not EVALSHA: a pipeline cannot fall back on NOSCRIPT, and the script text is
        # small next to 500 commands.
        pipe.eval(ENQUEUE_FAIR_SCRIPT, 1, self.queue, *args)

    @staticmethod
    def _account(report: SendReport, chunks: list[list[Command]], results: list[list[int]]) -> None:
        for chunk, flags in zip(chunks, results, strict=True):
            for command, queued in zip(chunk, flags, strict=True):
                if queued:
                    report.queued += 1
                else:
                    report.duplicates.append(command.command_id)
