"""An in-memory stand-in for the few Redis calls a `TaskProducer` makes, so that the real producer
code runs unchanged in a service's tests, with no Redis server.

It understands exactly what taskline_producer.client and taskline_producer.outcomes send: the
enqueue script (registered, or EVAL in a pipeline), and the reads of an outcome (GET, EXISTS,
BLMOVE). The enqueue script's rules are kept: a job id whose job or result is held is refused as
a duplicate, and each job attempt, queued or refused, is handed to `on_enqueue` with its exact
bytes. Anything else raises `NotImplementedError` naming the call. Job TTLs are not enforced: a
test's jobs never expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from taskline_producer import keys
from taskline_producer.wire import ENQUEUE_FAIR_SCRIPT, ENQUEUE_SCRIPT

__all__ = ["EnqueueAttempt", "MemoryRedis"]

_IDLE_BLOCK_S: Final = 0.05
"""How long a BLMOVE on an empty list waits before answering nothing (its caller reads again)."""


@dataclass(frozen=True, slots=True)
class EnqueueAttempt:
    """One job the enqueue script was asked to queue, as Redis would have received it."""

    queue: str
    job_id: str
    raw: bytes
    score_ms: int
    queued: bool
    fairness_key: str = ""
    """Whose turn it takes ('' for none: straight into the queue)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _args_per_job(script: str) -> int:
    """How many arguments each job takes in one of the producer's enqueue scripts."""
    if script == ENQUEUE_SCRIPT:
        return 2
    if script == ENQUEUE_FAIR_SCRIPT:
        return 4
    raise _unsupported("this Lua script (only the producer's enqueue scripts)")


def _unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(
        f"taskline_producer.testing's memory Redis does not do {what}: it stands in for the calls a"
        " TaskProducer makes. Hand the producer under test to your code; for anything else use a real"
        " Redis (or fakeredis)"
    )


@dataclass
class MemoryRedis:
    """Jobs, queues and outcomes in dictionaries, behind the redis.asyncio calls the producer uses."""

    on_enqueue: Callable[[EnqueueAttempt], None] | None = None
    strings: dict[str, bytes] = field(default_factory=dict)
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    lists: dict[str, list[bytes]] = field(default_factory=dict)
    connection_pool: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.connection_pool is None:
            self.connection_pool = _NoPool()

    # -- the enqueue script --------------------------------------------------------------------

    def register_script(self, script: str) -> Callable[..., Any]:
        per_job = _args_per_job(script)

        async def run(keys: Sequence[str], args: Sequence[Any]) -> list[int]:
            return self.enqueue(keys[0], args, per_job)

        return run

    def enqueue(self, queue: str, args: Sequence[Any], per_job: int = 2) -> list[int]:
        """The enqueue scripts: ARGV = score, job TTL, then per job its id and JSON (and, for the
        fair script, `per_job` 4, its fairness key and cost), then the trace context written
        beside each queued job (one argument more: a traced send). A keyed job is kept in the
        queue here too: what was sent is what a test asks about, not when it would be claimed."""
        score = int(args[0])
        last = len(args) - (len(args) - 2) % per_job
        trace = _raw(args[last]) if last < len(args) else None
        flags: list[int] = []
        for at in range(2, last, per_job):
            job_id, raw = _text(args[at]), _raw(args[at + 1])
            fairness_key = _text(args[at + 2]) if per_job == 4 else ""
            held = keys.job_key(job_id) in self.strings or keys.result_key(job_id) in self.strings
            attempt = EnqueueAttempt(_text(queue), job_id, raw, score, queued=not held, fairness_key=fairness_key)
            if self.on_enqueue is not None:
                self.on_enqueue(attempt)  # may refuse the job by raising, before anything is kept
            if not held:
                self.strings[keys.job_key(job_id)] = raw
                if trace is not None:
                    self.strings[keys.trace_key(job_id)] = trace
                self.queues.setdefault(attempt.queue, {})[job_id] = score
            flags.append(0 if held else 1)
        return flags

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self.strings.get(key)

    async def exists(self, *names: str) -> int:
        return sum(1 for name in names if name in self.strings or name in self.lists)

    async def blmove(self, source: str, destination: str, timeout: float, *sides: str) -> bytes | None:  # noqa: ASYNC109
        tokens = self.lists.get(source)
        if tokens:
            token = tokens.pop(0)
            self.lists.setdefault(destination, []).insert(0, token)
            return token
        await asyncio.sleep(min(float(timeout), _IDLE_BLOCK_S))
        return None

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)

    async def aclose(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise _unsupported(name.upper())


@dataclass
class _NoPool:
    """What the outcome waiter asks of a client's connection pool: its keyword arguments."""

    connection_kwargs: dict[str, Any] = field(default_factory=dict)


class _Pipeline:
    """Calls queued and answered in order by `execute` (there is nothing to make atomic)."""

    def __init__(self, redis: MemoryRedis) -> None:
        self._redis = redis
        self._calls: list[Callable[[], Any]] = []

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._calls.clear()

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> _Pipeline:
        per_job = _args_per_job(script)
        if numkeys != 1:
            raise _unsupported("an enqueue script with other than one key")
        queue, args = _text(keys_and_args[0]), keys_and_args[1:]
        self._calls.append(lambda: self._redis.enqueue(queue, args, per_job))
        return self

    def get(self, key: str) -> _Pipeline:
        self._calls.append(lambda: self._redis.strings.get(key))
        return self

    def exists(self, *names: str) -> _Pipeline:
        self._calls.append(lambda: sum(1 for n in names if n in self._redis.strings or n in self._redis.lists))
        return self

    async def execute(self) -> list[Any]:
        calls, self._calls = self._calls, []
        return [call() for call in calls]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise _unsupported(f"{name.upper()} in a pipeline")
