"""Worker processes started by the tests and the benchmark: knowing when each one is up.

A worker writes its heartbeat (`taskline:worker:<queue>:<worker id>`, listed in the index
`taskline:workers:<queue>`) as soon as it has started, before its first poll, and again every
`TASKLINE_HEARTBEAT_INTERVAL`. The document carries the process id, so each started process is
recognised by its own heartbeat, whatever other workers share the queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection
from typing import Any

from redis.asyncio import Redis
from taskline_producer import keys


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def heartbeats_by_pid(redis: Redis, queue: str) -> dict[int, dict[str, Any]]:
    """The live heartbeat documents of `queue`'s workers, by process id."""
    worker_ids = await redis.zrange(keys.workers_index_key(queue), 0, -1)
    if not worker_ids:
        return {}
    found: dict[int, dict[str, Any]] = {}
    for raw in await redis.mget([keys.heartbeat_key(queue, _text(i)) for i in worker_ids]):
        if raw is None:
            continue
        try:
            document = json.loads(raw)
            found[int(document["pid"])] = document
        except (ValueError, KeyError, TypeError):
            continue
    return found


async def wait_for_heartbeats(
    redis: Redis,
    queue: str,
    pids: Collection[int],
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 (a deadline over many awaits, not one)
    check: Callable[[], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """Wait until every process in `pids` has written a heartbeat for `queue`; their documents by
    pid. `check()` runs on every round and may raise (say, when a process has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        found = await heartbeats_by_pid(redis, queue)
        missing = [pid for pid in pids if pid not in found]
        if not missing:
            return {pid: found[pid] for pid in pids}
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no heartbeat on queue {queue!r} from process(es) {missing} after {timeout:.0f} s:"
                " read the worker's log, and check that it uses this Redis database and queue"
            )
        await asyncio.sleep(0.05)
