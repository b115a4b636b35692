"""Claiming jobs: one Redis round trip per poll instead of one plus five per job.

arq reads the due job ids (ZRANGEBYSCORE), then claims each job with WATCH in-progress key →
EXISTS → ZSCORE → MULTI/SET/EXEC, four round trips per job, one job after the other, and starts
each job with one more (GET the job, INCR and EXPIRE its try counter). The script below does
the same atomically in one call: it reads the due jobs in queue order, claims each one nobody
holds by setting its in-progress key with arq's expiry, exactly as arq does, up to the
worker's free slots, and (when asked) fetches each claimed job's payload and counts its try
the way arq's `run_job` would (`worker.arq_seam.arq_run`).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX, RETRY_KEY_TTL_S

__all__ = ["CLAIM_SCRIPT", "Claimed", "parse_claimed"]

CLAIM_SCRIPT: Final = f"""
-- KEYS[1]: the queue; ARGV[1]: now (epoch ms); ARGV[2]: in-progress expiry (ms);
-- ARGV[3]: most jobs to claim; ARGV[4]: how many due jobs to look at (arq's queue_read_limit);
-- ARGV[5]: '1' to fetch each claimed job and count its try (arq's run_job opening), else '0'.
-- Returns, per job claimed in queue order: job id, score, and when fetching, the job's payload
-- (false when its key expired) and its try number.
local claimed = {{}}
local limit = tonumber(ARGV[3])
local fetch = ARGV[5] == '1'
local width = fetch and 4 or 2
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
for i = 1, #due, 2 do
  if #claimed >= width * limit then break end
  local id = due[i]
  if redis.call('SET', '{IN_PROGRESS_KEY_PREFIX}' .. id, '1', 'NX', 'PX', ARGV[2]) then
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[i + 1]
    if fetch then
      claimed[#claimed + 1] = redis.call('GET', '{JOB_KEY_PREFIX}' .. id)
      claimed[#claimed + 1] = redis.call('INCR', '{RETRY_KEY_PREFIX}' .. id)
      redis.call('EXPIRE', '{RETRY_KEY_PREFIX}' .. id, {RETRY_KEY_TTL_S})
    end
  end
end
return claimed
"""


class Claimed(NamedTuple):
    job_id: str
    score: int
    payload: bytes | None
    """None when not fetched, or when the job's key had expired."""
    job_try: int | None
    """None when not fetched."""


def parse_claimed(reply: list[Any], *, fetched: bool) -> list[Claimed]:
    """The script's flat reply → one `Claimed` per job."""
    width = 4 if fetched else 2
    jobs = []
    for index in range(0, len(reply), width):
        job_id = reply[index]
        job_id = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
        score = int(float(reply[index + 1]))
        if fetched:
            jobs.append(Claimed(job_id, score, reply[index + 2] or None, int(reply[index + 3])))
        else:
            jobs.append(Claimed(job_id, score, None, None))
    return jobs
