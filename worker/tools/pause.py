"""Pausing and resuming claiming for the whole queue, and reading whether it is paused.

While `<queue>:paused` (keys.paused_key) exists, the claim script claims nothing
(worker/arq_seam/claim.py): workers stay up, healthy and beating, running jobs finish, and queued
jobs wait. Its value is a small JSON document, `{"by": who, "at": when (RFC 3339)}`. Workers see a
pause at their next claim or heartbeat; `taskline status`, `taskline health --json`, the fleet
metrics page (`taskline_claiming_paused`) and the web page read the key itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from taskline_producer import keys

from worker.text import json_object

__all__ = ["pause_claiming", "read_pause", "resume_claiming"]


async def pause_claiming(redis: Redis, queue: str, by: str) -> dict[str, Any]:
    """Pause claiming for the queue (again: the first pause's document is kept); returns the pause."""
    document = {"by": by, "at": datetime.now(UTC).isoformat()}
    await redis.set(keys.paused_key(queue), json.dumps(document), nx=True)
    return await read_pause(redis, queue) or document


async def resume_claiming(redis: Redis, queue: str, by: str) -> dict[str, Any] | None:
    """Resume claiming; returns the pause that was lifted (None when it was not paused). `by` is
    for the caller's record (the page's audit)."""
    del by
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.paused_key(queue))
        pipe.delete(keys.paused_key(queue))
        raw, _ = await pipe.execute()
    if raw is None:
        return None
    return json_object(raw) or {"by": "?", "at": None}


async def read_pause(redis: Redis, queue: str) -> dict[str, Any] | None:
    """The pause document while claiming is paused, else None."""
    raw = await redis.get(keys.paused_key(queue))
    if raw is None:
        return None
    return json_object(raw) or {"by": "?", "at": None}
