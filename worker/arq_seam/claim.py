"""Claiming jobs: every due job a worker has room for, claimed, fetched and counted in one round trip.

arq's poll reads the due job ids (ZRANGEBYSCORE) and hands them to `Worker.start_jobs`, which
claims each with WATCH/EXISTS/ZSCORE/MULTI/SET/EXEC and then starts it with one more MULTI
(GET the job, INCR its try counter): five or more round trips per job, one job after the other.
taskline gives arq a `queue_read_limit` of 1, so arq's read only says whether anything is due,
and its `start_jobs` (worker/arq_seam/overrides.py) runs the script below, which does the rest
atomically inside Redis: it reads the due jobs in queue order, claims each one nobody holds, up
to the worker's free slots, with arq's in-progress key holding the claiming worker's id (so
operators can tell whose claim a key is) and expiring like arq's, and returns each claimed job
with its payload and its try number. The ids never cross the network twice.

A job value larger than any job may be (`max_bytes`, TASKLINE_MAX_BULK_PAYLOAD_BYTES or
TASKLINE_MAX_PAYLOAD_BYTES, whichever is larger) is measured with STRLEN and never read whole:
the script hands back its size and its first `OVERSIZED_HEAD_BYTES`, and the worker dead-letters
it from those (worker/arq_seam/job_runner.py) without loading it.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX, RETRY_KEY_TTL_S

from worker.text import reply_text

__all__ = ["CLAIM_SCRIPT", "OVERSIZED_HEAD_BYTES", "Claimed", "claim_arguments", "parse_claimed"]

OVERSIZED_HEAD_BYTES: Final = 4096
"""How much of an oversized job is read: enough for the dead letter to show what it was."""


CLAIM_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: now (epoch ms); ARGV[2]: claim expiry (ms); ARGV[3]: the
-- claiming worker's id; ARGV[4]: most jobs to claim; ARGV[5]: how many due jobs to look at;
-- ARGV[6]: the largest job value to read (bytes).
-- Returns, per job claimed in queue order: job id, score, payload (false when its key
-- expired; {{size, its first bytes}} when it is larger than ARGV[6]), try number.
local claimed = {{}}
local limit = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5]))
for i = 1, #due, 2 do
  if #claimed >= 4 * limit then break end
  local id = due[i]
  if redis.call('SET', '{IN_PROGRESS_KEY_PREFIX}' .. id, ARGV[3], 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[i + 1]
    local size = redis.call('STRLEN', '{JOB_KEY_PREFIX}' .. id)
    if size > tonumber(ARGV[6]) then
      claimed[#claimed + 1] = {{size, redis.call('GETRANGE', '{JOB_KEY_PREFIX}' .. id, 0, {OVERSIZED_HEAD_BYTES - 1})}}
    else
      claimed[#claimed + 1] = redis.call('GET', '{JOB_KEY_PREFIX}' .. id)
    end
    claimed[#claimed + 1] = redis.call('INCR', '{RETRY_KEY_PREFIX}' .. id)
    redis.call('EXPIRE', '{RETRY_KEY_PREFIX}' .. id, {RETRY_KEY_TTL_S})
  end
end
return claimed
"""


class Claimed(NamedTuple):
    job_id: str
    score: int
    payload: bytes | None
    """None when the job's key had expired (the job TTL passed before it ran); for an oversized
    job, its first OVERSIZED_HEAD_BYTES."""
    job_try: int
    oversized: int = 0
    """The size in Redis of a job too large to read (0: not oversized)."""


def claim_arguments(now_ms: int, expiry_ms: int, worker_id: str, limit: int, scan: int, max_bytes: int) -> list[Any]:
    """ARGV for CLAIM_SCRIPT: claim up to `limit` of the first `scan` due jobs, reading none larger
    than `max_bytes`."""
    return [now_ms, expiry_ms, worker_id, limit, scan, max_bytes]


def parse_claimed(reply: list[Any]) -> list[Claimed]:
    """The script's flat reply → one `Claimed` per job, in queue order."""
    jobs = []
    for index in range(0, len(reply), 4):
        job_id = reply_text(reply[index])
        score, payload, job_try = int(float(reply[index + 1])), reply[index + 2], int(reply[index + 3])
        if isinstance(payload, list):  # {size, head}: too large to read
            jobs.append(Claimed(job_id, score, payload[1] or b"", job_try, oversized=int(payload[0])))
        else:
            jobs.append(Claimed(job_id, score, payload or None, job_try))
    return jobs
