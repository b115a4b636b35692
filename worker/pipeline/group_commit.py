"""Group commit: commands of concurrently running jobs share one transaction.

Each job hands its command to `GroupCommitter.apply` and awaits its own outcome. A flusher
takes everything waiting (up to `max_batch`) and applies it in one transaction with
multi-row statements; while that transaction runs, new commands gather for the next one. At
low load a batch holds one command and adds no delay; under load, batches grow by themselves.

A database error that a transient cause explains fails the whole batch (each job retries on
its own). Any other database error may be one command's fault: the batch is then applied
again one command per transaction, so a bad command never fails its neighbours.

When the worker traces, it hands in a `TransactionTracer` and each traced job its `JobTrace`: a
transaction then has a span of its own, linked to every job whose commands it applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from taskline_producer.contract import Command

from worker.pipeline.apply import Outcome, apply_commands
from worker.pipeline.failures import Kind, classify_exception
from worker.pipeline.sinks import JobTrace, TransactionTracer
from worker.store.engine import Sessions

__all__ = ["GroupCommitter"]

_Waiter = tuple[Command, str | None, "asyncio.Future[Outcome]", JobTrace | None]


class GroupCommitter:
    def __init__(
        self,
        sessions: Sessions,
        *,
        max_batch: int = 100,
        flushers: int = 1,
        worker_id: str | None = None,
        tracer: TransactionTracer | None = None,
    ) -> None:
        self._sessions = sessions
        self._tracer = tracer
        self._worker_id = worker_id  # recorded with every processed command (`taskline trace`)
        self._max_batch = max_batch
        self._flushers = flushers
        self._waiting: list[_Waiter] = []
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def apply(self, command: Command, signed_by: str | None = None, *, trace: JobTrace | None = None) -> Outcome:
        """Apply one command in the next group transaction; returns its outcome or raises.
        `signed_by`: the key that signed its job, recorded with it; `trace`: its job's spans."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((command, signed_by, future, trace))
        self._start_flusher()
        return await future

    async def apply_many(
        self, commands: Sequence[Command], signed_by: str | None = None, *, trace: JobTrace | None = None
    ) -> list[Outcome | BaseException]:
        """Apply a bulk job's commands in their own transaction(s), `max_batch` at a time.

        Returns one outcome, or the exception that stopped it, per command."""
        results: list[Outcome | BaseException] = []
        for start in range(0, len(commands), self._max_batch):
            chunk = [(command, signed_by) for command in commands[start : start + self._max_batch]]
            results.extend(await self._apply_isolated(chunk, [trace]))
        return results

    async def wait_idle(self) -> None:
        """Wait for the running flushers (used at shutdown)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _start_flusher(self) -> None:
        # A flusher that has finished is done at once, but leaves `_running` only when its done
        # callback runs (a loop iteration later): count the unfinished ones, or a command added
        # in between would wait for the next command to start a flusher.
        running = sum(not task.done() for task in self._running)
        if running < self._flushers and self._waiting:
            task = asyncio.create_task(self._drain())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            batch = [waiter for waiter in batch if not waiter[2].done()]
            if not batch:
                continue
            traces = [waiter[3] for waiter in batch]
            results = await self._apply_isolated([(command, signed_by) for command, signed_by, _, _ in batch], traces)
            for (_, _, future, _), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _apply_isolated(
        self, commands: list[tuple[Command, str | None]], traces: list[JobTrace | None]
    ) -> list[Outcome | BaseException]:
        try:
            return list(await self._transaction(commands, traces))
        except Exception as exc:
            if len(commands) == 1 or classify_exception(exc)[0] is Kind.TRANSIENT:
                return [exc] * len(commands)
        results: list[Outcome | BaseException] = []
        for index, command in enumerate(commands):
            try:
                one = traces[index : index + 1] if len(traces) == len(commands) else traces
                results.extend(await self._transaction([command], one))
            except Exception as exc:
                results.append(exc)
        return results

    async def _transaction(
        self, commands: list[tuple[Command, str | None]], traces: list[JobTrace | None]
    ) -> list[Outcome]:
        """One transaction for (command, the key that signed it) pairs; `traces`: their jobs' spans."""
        self.batches += 1
        signers = {command.command_id: signed_by for command, signed_by in commands if signed_by is not None}
        plain = [command for command, _ in commands]
        tracer = self._tracer
        traced = [trace for trace in traces if trace is not None] if tracer is not None else []
        if tracer is None or not traced:
            async with self._sessions() as session, session.begin():
                return await apply_commands(session, plain, worker_id=self._worker_id, signers=signers)
        with tracer.transaction(traced, len(plain)) as mark:
            async with self._sessions() as session, session.begin():
                outcomes = await apply_commands(session, plain, worker_id=self._worker_id, signers=signers)
                mark.committing()
            return outcomes
