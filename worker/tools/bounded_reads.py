"""Job values read for a view, never larger than the view can use.

A job's value in Redis is whatever a producer (or anyone who can write to Redis) put there: a
view that GETs it whole can be made to load hundreds of megabytes per row. `read_job_values`
measures each value in Redis (STRLEN) and reads only those within `max_bytes`, in one round trip;
a larger one comes back as its size. `read_values` does the same for any string keys (the
heartbeat documents). `parse_json_bounded` parses what was read without letting
deep nesting escape as a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any, Final

from redis.asyncio import Redis
from taskline_producer import keys

__all__ = ["VIEW_MAX_BYTES", "Oversized", "parse_json_bounded", "read_job_values", "read_values"]

VIEW_MAX_BYTES: Final = 1024 * 1024
"""The largest job value a view reads (the default TASKLINE_MAX_BULK_PAYLOAD_BYTES)."""

_READ_SCRIPT: Final = """
-- KEYS: string keys; ARGV[1]: the largest value to read. Per key: its value, false when absent,
-- or its size (an integer) when larger than ARGV[1].
local limit = tonumber(ARGV[1])
local values = {}
for i, key in ipairs(KEYS) do
  local size = redis.call('STRLEN', key)
  if size > limit then
    values[i] = size
  else
    values[i] = redis.call('GET', key)
  end
end
return values
"""


class Oversized(int):
    """The size of a value too large to read."""


async def read_job_values(
    redis: Redis, job_ids: list[str], max_bytes: int = VIEW_MAX_BYTES
) -> list[bytes | Oversized | None]:
    """Each job's value (None when absent, `Oversized(size)` when larger than `max_bytes`)."""
    return await read_values(redis, [keys.job_key(j) for j in job_ids], max_bytes)


async def read_values(
    redis: Redis, names: list[str], max_bytes: int = VIEW_MAX_BYTES
) -> list[bytes | Oversized | None]:
    """Each string key's value (None when absent, `Oversized(size)` when larger than `max_bytes`)."""
    if not names:
        return []
    script = redis.register_script(_READ_SCRIPT)
    reply = await script(keys=names, args=[max_bytes])
    values: list[bytes | Oversized | None] = []
    for value in reply:
        if isinstance(value, int):
            values.append(Oversized(value))
        elif isinstance(value, str):
            values.append(value.encode())
        else:
            values.append(value)
    return values


def parse_json_bounded(raw: bytes | str) -> Any:
    """`json.loads`, with nesting too deep for the interpreter raised as ValueError."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
