"""Group commit: commands of concurrently running jobs share one transaction.

Each job hands its command to `GroupCommitter.apply` and awaits its own outcome. A flusher
takes everything waiting (up to `max_batch`) and applies it in one transaction with
multi-row statements; while that transaction runs, new commands gather for the next one. At
low load a batch holds one command and adds no delay; under load, batches grow by themselves.

A database error that a transient cause explains fails the whole batch (each job retries on
its own). Any other database error may be one command's fault: the batch is then applied
again one command per transaction, so a bad command never fails its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from taskline_producer.contract import Command

from worker.pipeline.apply import Outcome, apply_commands
from worker.pipeline.failures import Kind, classify_exception
from worker.store.engine import Sessions

__all__ = ["GroupCommitter"]

_Waiter = tuple[Command, str | None, "asyncio.Future[Outcome]"]


class GroupCommitter:
    def __init__(
        self, sessions: Sessions, *, max_batch: int = 100, flushers: int = 1, worker_id: str | None = None
    ) -> None:
        self._sessions = sessions
        self._worker_id = worker_id  # recorded with every processed command (`taskline trace`)
        self._max_batch = max_batch
        self._flushers = flushers
        self._waiting: list[_Waiter] = []
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def apply(self, command: Command, signed_by: str | None = None) -> Outcome:
        """Apply one command in the next group transaction; returns its outcome or raises.
        `signed_by`: the key that signed its job, recorded with it."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((command, signed_by, future))
        self._start_flusher()
        return await future

    async def apply_many(
        self, commands: Sequence[Command], signed_by: str | None = None
    ) -> list[Outcome | BaseException]:
        """Apply a bulk job's commands in their own transaction(s), `max_batch` at a time.

        Returns one outcome, or the exception that stopped it, per command."""
        results: list[Outcome | BaseException] = []
        for start in range(0, len(commands), self._max_batch):
            chunk = [(command, signed_by) for command in commands[start : start + self._max_batch]]
            results.extend(await self._apply_isolated(chunk))
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
            results = await self._apply_isolated([(command, signed_by) for command, signed_by, _ in batch])
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _apply_isolated(self, commands: list[tuple[Command, str | None]]) -> list[Outcome | BaseException]:
        try:
            return list(await self._transaction(commands))
        except Exception as exc:
            if len(commands) == 1 or classify_exception(exc)[0] is Kind.TRANSIENT:
                return [exc] * len(commands)
        results: list[Outcome | BaseException] = []
        for command in commands:
            try:
                results.extend(await self._transaction([command]))
            except Exception as exc:
                results.append(exc)
        return results

    async def _transaction(self, commands: list[tuple[Command, str | None]]) -> list[Outcome]:
        """One transaction for (command, the key that signed it) pairs."""
        self.batches += 1
        signers = {command.command_id: signed_by for command, signed_by in commands if signed_by is not None}
        async with self._sessions() as session, session.begin():
            return await apply_commands(
                session, [command for command, _ in commands], worker_id=self._worker_id, signers=signers
            )
