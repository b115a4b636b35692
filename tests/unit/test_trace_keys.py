"""The worker's read of the trace keys beside its claimed jobs: one MGET, and never a reason to
hold a claimed job back."""

from __future__ import annotations

from typing import Any

import fakeredis
from redis.exceptions import ConnectionError as RedisConnectionError
from taskline_producer import keys

from worker.arq_seam.trace_keys import read_trace_contexts


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


async def test_each_claimed_jobs_trace_key_value_in_claim_order_none_where_absent():
    """Present values come back as text, absent ones as None, a value that is not UTF-8 as text
    that simply is no trace context (the job then starts a trace of its own)."""
    redis = fakeredis.FakeAsyncRedis()
    await redis.set(keys.trace_key("a"), b'{"traceparent":"00-x-y-01"}')
    await redis.set(keys.trace_key("c"), b"\xff\xfe")
    values = await read_trace_contexts(redis, ["a", "b", "c"], Log())
    assert values[:2] == ['{"traceparent":"00-x-y-01"}', None]
    assert isinstance(values[2], str)


async def test_a_redis_error_leaves_the_jobs_untraced_and_says_so():
    """The jobs are already claimed: when the MGET fails they run anyway, each in a new trace."""

    class Failing:
        async def mget(self, names: list[str]) -> list[Any]:
            raise RedisConnectionError("gone")

    log = Log()
    assert await read_trace_contexts(Failing(), ["a", "b"], log) == [None, None]
    assert "trace keys" in log.lines[0][0]
