"""Fair turns: one user (or tenant) flooding the queue does not hold up everybody else.

The problem. The queue is one sorted set in arrival order, and a worker claims the due jobs at its
head. When one user sends 200,000 commands at once, every command sent after them, by anybody,
waits for all 200,000: minutes of latency for users who sent one command.

The design, and why.

* **A lane per fairness key.** A producer names each job's fairness key (by default
  `user:<user_id>`; a producer may pass another, such as `tenant:acme`). The fair enqueue script
  (`taskline_producer.wire.ENQUEUE_FAIR_SCRIPT`) writes the job's key exactly as before (so the
  duplicate check, the job's time to live and every tool that reads a job are unchanged) but puts
  its id at the end of its key's lane (`<queue>:fair:lane:<key>`, a list) instead of into the
  queue, and enters the key in `<queue>:fair:turns`. Lists cost O(1) per job at both ends; the
  queue itself stays small (what is running, what is retrying, what came without a key), so the
  claim's scan of its head stays as cheap as it was.
* **Turns by virtual time.** `<queue>:fair:turns` scores each key with waiting jobs by its next
  turn. A claim with free slots, after it has taken what is due in the queue itself, repeatedly
  takes the key with the lowest turn, moves the first job of its lane into the queue with its
  original score, claims it there in the same step (so the claim is visible from the moment it
  exists, and a dead worker's claim is taken over as any other), and moves the key's turn on by
  the job's cost divided by the key's weight. A job's cost is its number of commands, so a bulk
  of 100 commands of one user counts as 100 turns, not one. A key that starts sending joins at
  the turn last served (`<queue>:fair:clock`): a user who was quiet for an hour gets no hour of
  credit, and a flood sent before it cannot push it back.
* **Limits defer, never drop.** A key may have a rate limit (commands per second, with a burst)
  and a weight, in `<queue>:fair:limits` (`taskline fairness limit`). A key whose token bucket is
  empty leaves its turn and goes to `<queue>:fair:held`, scored by when it has a token again;
  its jobs stay in its lane and are claimed then. Nothing is dead-lettered for a limit, and a
  limit never makes a worker sleep: it claims the other keys' jobs meanwhile.
* **Limits live in Redis, not in the worker's environment,** because they are operating
  decisions made while the system runs (a tenant over its plan, a noisy integration): every
  claim reads the hash, so `taskline fairness limit` applies fleet-wide at the next claim, with no
  restart and no worker left on old settings. The hash survives worker restarts and deploys.
* **What goes first.** Jobs already in the queue are claimed before any lane's: those are jobs
  without a fairness key (arq's own `enqueue_job`, the plain-Redis recipe, the outbox relay,
  replays), retries waiting their delay, and jobs of dead workers. So a job without a key is
  always claimed, and a retry keeps its place. (A flood sent without a key is not made fair:
  send with a key.)
* **In flight, bounded per key.** A worker takes a key's jobs from its lane only while the
  commands of that key it holds (a bulk job counts its commands) stay under
  TASKLINE_FAIR_IN_FLIGHT (400); other keys' jobs are still claimed. Turns decide the order of
  claims, but a claimed job waits behind what its worker already holds: without the bound, one
  claim could fill fifty slots with bulk jobs of the flooding user (5,000 commands) that other
  users' jobs, claimed next, would wait behind inside the worker. The default lets one key keep
  `TASKLINE_BULK_CONCURRENCY` (4) bulk jobs of 100 busy, so a flood alone drains at full speed.
* **Pause** stops lanes too: the claim returns before it looks at them.

The claim reply says how many keys still wait (in their turn or held) and when the first held key
may go again, so a worker runs the claim when there is something in the lanes even though arq's
own read of the queue found nothing due, and an idle worker costs Redis nothing more when there
is not (worker/arq_seam/overrides.py).
"""

from __future__ import annotations

from typing import Final

from taskline_producer.keys import FAIR_LANE_INFIX, IN_PROGRESS_KEY_PREFIX

__all__ = ["FAIR_TURNS_LUA", "MAX_HELD_RELEASED_PER_CLAIM"]

MAX_HELD_RELEASED_PER_CLAIM: Final = 100
"""How many held keys whose hold ended one claim puts back in their turn (bounds one claim)."""

FAIR_TURNS_LUA: Final = f"""
-- Fair turns (worker/arq_seam/fair_turns.py): KEYS[3] turns, KEYS[4] held, KEYS[5] limits,
-- KEYS[6] token buckets, KEYS[7] the clock. Uses `need`, `limit`, `now` and `fetch` from above;
-- ARGV[9]: how many commands one key may hold in this worker at once; ARGV[10..]: key, commands
-- of it this worker holds now, ... (keys not listed hold none).
local per_key, lane_costs, room, full = tonumber(ARGV[9]) or 0, {{}}, {{}}, 0
for i = 10, #ARGV, 2 do
  room[ARGV[i]] = per_key - tonumber(ARGV[i + 1])
  if room[ARGV[i]] <= 0 then full = full + 1 end
end
local turns, held, limits, buckets = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local clock = tonumber(redis.call('GET', KEYS[7]) or '0') or 0
local clock_before = clock
for _, key in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, {MAX_HELD_RELEASED_PER_CLAIM})) do
  redis.call('ZREM', held, key)
  redis.call('ZADD', turns, 'NX', clock, key)
end
local specs = {{}}
local function spec_of(key)  -- {{commands per second (0: none), burst, weight}}
  if specs[key] == nil then
    local own, default = unpack(redis.call('HMGET', limits, key, '*'))
    local rate, burst, weight = string.match(own or default or '', '^(%S+) (%S+) (%S+)$')
    specs[key] = {{tonumber(rate) or 0, math.max(tonumber(burst) or 1, 1), math.max(tonumber(weight) or 1, 0.001)}}
  end
  return specs[key]
end
local rounds = 0
while need > 0 and rounds < 2 * limit + 16 do
  rounds = rounds + 1
  -- the key with the lowest turn among those with room in this worker (at most `full` have none)
  local top, key, turn = redis.call('ZRANGE', turns, 0, full, 'WITHSCORES'), nil, nil
  for j = 1, #top, 2 do
    if (room[top[j]] or per_key) > 0 then
      key, turn = top[j], tonumber(top[j + 1])
      break
    end
  end
  if key == nil then break end
  local lane = KEYS[1] .. '{FAIR_LANE_INFIX}' .. key
  local entry = redis.call('LINDEX', lane, 0)
  if not entry then
    redis.call('ZREM', turns, key)
  else
    local spec = spec_of(key)
    local tokens = nil
    if spec[1] > 0 then
      local left, at = string.match(redis.call('HGET', buckets, key) or '', '^(%S+) (%S+)$')
      tokens = spec[2]
      if tonumber(left) and tonumber(at) then
        tokens = math.min(spec[2], tonumber(left) + (now - tonumber(at)) * spec[1] / 1000)
      end
    end
    if tokens ~= nil and tokens < 1 then
      redis.call('ZREM', turns, key)
      redis.call('ZADD', held, now + math.ceil((1 - tokens) * 1000 / spec[1]), key)
      redis.call('HSET', buckets, key, tokens .. ' ' .. now)
    else
      redis.call('LPOP', lane)
      local score, cost, id = string.match(entry, '^(%S+) (%S+) (.*)$')
      cost = math.max(tonumber(cost) or 1, 1)
      if turn > clock then clock = turn end
      if redis.call('LLEN', lane) == 0 then
        redis.call('ZREM', turns, key)
      else
        redis.call('ZADD', turns, turn + cost / spec[3], key)
      end
      if tokens ~= nil then redis.call('HSET', buckets, key, (tokens - cost) .. ' ' .. now) end
      redis.call('ZADD', KEYS[1], score, id)
      if redis.call('SET', '{IN_PROGRESS_KEY_PREFIX}' .. id, ARGV[3], 'NX', 'PX', ARGV[2]) then
        fetch(id, score)
        need = need - 1
        room[key] = (room[key] or per_key) - cost
        if room[key] <= 0 then full = full + 1 end
        lane_costs[#lane_costs + 1] = id
        lane_costs[#lane_costs + 1] = key
        lane_costs[#lane_costs + 1] = cost
      end
    end
  end
end
if clock ~= clock_before then redis.call('SET', KEYS[7], clock) end
"""
