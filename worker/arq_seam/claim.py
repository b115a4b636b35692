"""Claiming jobs: every due job a worker has room for, claimed, fetched and counted in one round trip.

arq's poll reads the due job ids (ZRANGEBYSCORE) and hands them to `Worker.start_jobs`, which
claims each with WATCH/EXISTS/ZSCORE/MULTI/SET/EXEC and then starts it with one more MULTI
(GET the job, INCR its try counter): five or more round trips per job, one job after the other.
taskline gives arq a `queue_read_limit` of 1, so arq's read only says whether anything is due,
and its `start_jobs` (worker/arq_seam/overrides.py) runs the script below, which does the rest
atomically inside Redis, in three steps:

1. **Paused?** While `<queue>:paused` exists (keys.paused_key; `taskline` operators set it),
   nothing is claimed and the reply says so: workers stay up and healthy, and wait.
2. **Claim.** It reads the due jobs in queue order and claims each one nobody holds (`SET NX`),
   up to the worker's free slots, with arq's in-progress key holding the claiming worker's id
   (so the claim itself names its worker from the moment it is taken, and the operations tools
   find claims from the queue, worker/tools/claims.py) and expiring like arq's; each claimed
   job comes back with its payload and its try number. The ids never cross the network twice.
3. **Dead workers' claims** (only when the worker asks: once per heartbeat interval, and after a
   claim that found only held jobs; so a busy worker's hot path stays one `SET NX` per job): a
   due job whose claim is held by a worker whose heartbeat is older than `BEATS_PER_TTL`
   intervals (the same rule as `taskline health`; its age measured by Redis from the key's PTTL)
   is taken over at once instead of waiting for the claim's full expiry. A live worker's claim
   is never taken, however long its job runs: its heartbeat is at most an interval old. A claim
   whose worker has no heartbeat at all (it has not written its first one yet, or a restarted
   Redis lost it) is left to expire, and so is a legacy claim holding '1'. The reply lists what
   was taken over, and from whom.

4. **Fair turns** (worker/arq_seam/fair_turns.py): with slots still free, it takes jobs from the
   lanes of the fairness keys, in turn, within their rate limits, moving each into the queue and
   claiming it in the same step.

A job value larger than any job may be (`max_bytes`, TASKLINE_MAX_BULK_PAYLOAD_BYTES or
TASKLINE_MAX_PAYLOAD_BYTES, whichever is larger) is measured with STRLEN and never read whole:
the script hands back its size and its first `OVERSIZED_HEAD_BYTES`, and the worker dead-letters
it from those (worker/arq_seam/job_runner.py) without loading it.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from taskline_producer import keys
from taskline_producer.keys import IN_PROGRESS_KEY_PREFIX, JOB_KEY_PREFIX, RETRY_KEY_PREFIX, RETRY_KEY_TTL_S

from worker.arq_seam.fair_turns import FAIR_TURNS_LUA
from worker.observe.heartbeat import BEATS_PER_TTL
from worker.text import reply_text

__all__ = [
    "CLAIM_SCRIPT",
    "OVERSIZED_HEAD_BYTES",
    "ClaimReply",
    "Claimed",
    "claim_arguments",
    "claim_keys",
    "parse_claimed",
]

OVERSIZED_HEAD_BYTES: Final = 4096
"""How much of an oversized job is read: enough for the dead letter to show what it was."""

CLAIM_SCRIPT: Final = f"""
-- KEYS[1]: the queue; KEYS[2]: the queue's pause key; KEYS[3..7]: its fair turns' keys (turns,
-- held, limits, token buckets, clock).
-- ARGV[1]: now (epoch ms); ARGV[2]: claim expiry (ms); ARGV[3]: the claiming worker's id;
-- ARGV[4]: most jobs to claim; ARGV[5]: how many due jobs to look at; ARGV[6]: '1' to take
-- over the claims of dead workers; ARGV[7]: the queue's heartbeat key prefix; ARGV[8]: the
-- largest job value to read (bytes): a larger one comes back as {{size, its first bytes}};
-- ARGV[9]: commands one fairness key may hold in this worker; ARGV[10..]: key, commands held, ...
-- Returns {{paused (0/1), {{taken-over job id, dead worker id, ...}}, {{per job claimed in queue
-- order, then in fair turns: job id, score, payload (false when its key expired), try number,
-- ...}}, fairness keys still waiting (in their turn or held), when the first held key may go (epoch
-- ms, 0: none held), {{per job taken from a lane: job id, its fairness key, its cost}}}}.
if redis.call('EXISTS', KEYS[2]) == 1 then return {{1, {{}}, {{}}, 0, 0, {{}}}} end

local verdicts = {{}}
local function is_dead(holder)  -- its heartbeat exists and is older than {BEATS_PER_TTL} intervals
  if verdicts[holder] == nil then
    verdicts[holder] = false
    local beat_key = ARGV[7] .. holder
    local ok, beat = pcall(cjson.decode, redis.call('GET', beat_key) or 'null')
    if ok and type(beat) == 'table' and tonumber(beat.key_ttl_ms) and tonumber(beat.interval_s) then
      local age_ms = tonumber(beat.key_ttl_ms) - redis.call('PTTL', beat_key)
      verdicts[holder] = age_ms > tonumber(beat.interval_s) * 1000 * {BEATS_PER_TTL}
    end
  end
  return verdicts[holder]
end

local claimed, taken_over = {{}}, {{}}
local function fetch(id, score)  -- a job just claimed: its payload (or size) and its try number
  claimed[#claimed + 1] = id
  claimed[#claimed + 1] = score
  local size = redis.call('STRLEN', '{JOB_KEY_PREFIX}' .. id)
  if size > tonumber(ARGV[8]) then
    claimed[#claimed + 1] = {{size, redis.call('GETRANGE', '{JOB_KEY_PREFIX}' .. id, 0, {OVERSIZED_HEAD_BYTES - 1})}}
  else
    claimed[#claimed + 1] = redis.call('GET', '{JOB_KEY_PREFIX}' .. id)
  end
  claimed[#claimed + 1] = redis.call('INCR', '{RETRY_KEY_PREFIX}' .. id)
  redis.call('EXPIRE', '{RETRY_KEY_PREFIX}' .. id, {RETRY_KEY_TTL_S})
end

local limit, take_over, now = tonumber(ARGV[4]), ARGV[6] == '1', tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5]))
for i = 1, #due, 2 do
  if #claimed >= 4 * limit then break end
  local id = due[i]
  local claim = '{IN_PROGRESS_KEY_PREFIX}' .. id
  local mine = redis.call('SET', claim, ARGV[3], 'NX', 'PX', ARGV[2])
  if not mine and take_over then
    local holder = redis.call('GET', claim)
    if holder and holder ~= '1' and holder ~= ARGV[3] and is_dead(holder) then
      mine = redis.call('SET', claim, ARGV[3], 'PX', ARGV[2])
      taken_over[#taken_over + 1] = id
      taken_over[#taken_over + 1] = holder
    end
  end
  if mine then fetch(id, due[i + 1]) end
end

local need = limit - #claimed / 4
{FAIR_TURNS_LUA}
local first_held = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local waiting = redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])
return {{0, taken_over, claimed, waiting, tonumber(first_held[2]) or 0, lane_costs}}
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


class ClaimReply(NamedTuple):
    paused: bool
    """Claiming is paused for the queue: nothing was claimed."""
    claimed: list[Claimed]
    taken_over: dict[str, str]
    """Job id → the dead worker whose claim on it was taken over."""
    keys_waiting: int = 0
    """Fairness keys with jobs still in their lanes (waiting their turn, or held by a limit)."""
    first_release_ms: int = 0
    """When (epoch ms) the first key held by its rate limit may go again; 0: none is held."""
    lane_costs: dict[str, tuple[str, int]] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)
    """Job id → (its fairness key, its cost in commands), for the jobs taken from a fair lane."""


def claim_keys(queue: str) -> list[str]:
    """KEYS for CLAIM_SCRIPT: the queue, its pause key and its fair turns' keys."""
    return [
        queue,
        keys.paused_key(queue),
        keys.fair_turns_key(queue),
        keys.fair_held_key(queue),
        keys.fair_limits_key(queue),
        keys.fair_buckets_key(queue),
        keys.fair_clock_key(queue),
    ]


def claim_arguments(
    now_ms: int,
    expiry_ms: int,
    worker_id: str,
    limit: int,
    scan: int,
    max_bytes: int,
    *,
    take_over: bool = False,
    heartbeat_prefix: str = "",
    per_key: int = 1_000_000,
    held_by_key: dict[str, int] | None = None,
) -> list[Any]:
    """ARGV for CLAIM_SCRIPT: claim up to `limit` of the first `scan` due jobs, reading none larger
    than `max_bytes`; with `take_over`, also those held by dead workers, whose heartbeats are
    `heartbeat_prefix` + their id; then from the fair lanes, each key up to `per_key` commands held
    in this worker, counting those it holds now (`held_by_key`)."""
    return [
        now_ms,
        expiry_ms,
        worker_id,
        limit,
        scan,
        "1" if take_over else "0",
        heartbeat_prefix,
        max_bytes,
        per_key,
        *(item for key, held in (held_by_key or {}).items() for item in (key, held)),
    ]


def parse_claimed(reply: list[Any]) -> ClaimReply:
    """The script's reply → whether claiming is paused, the jobs claimed in queue order, and the
    claims taken over from dead workers."""
    paused, taken, flat = int(reply[0]) == 1, reply[1], reply[2]
    jobs = []
    for index in range(0, len(flat), 4):
        job_id = reply_text(flat[index])
        score, payload, job_try = int(float(flat[index + 1])), flat[index + 2], int(flat[index + 3])
        if isinstance(payload, list):  # {size, head}: too large to read
            jobs.append(Claimed(job_id, score, payload[1] or b"", job_try, oversized=int(payload[0])))
        else:
            jobs.append(Claimed(job_id, score, payload or None, job_try))
    taken_over = {reply_text(taken[i]): reply_text(taken[i + 1]) for i in range(0, len(taken), 2)}
    costs = reply[5]
    lane_costs = {reply_text(costs[i]): (reply_text(costs[i + 1]), int(costs[i + 2])) for i in range(0, len(costs), 3)}
    return ClaimReply(paused, jobs, taken_over, int(reply[3]), int(reply[4]), lane_costs)
