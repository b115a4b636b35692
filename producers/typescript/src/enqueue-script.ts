/**
 * The idempotent enqueue script: the same text as `taskline_producer.wire.ENQUEUE_SCRIPT`,
 * character for character, built the same way from the same key constants. A Python test
 * (tests/unit/test_typescript_producer.py) compares the two, so they cannot drift apart.
 *
 * `EVAL script 1 <queue> <now ms> <job TTL ms> <id1> <json1> <id2> <json2> ... [<trace>]` returns
 * one integer per job: 1 = queued, 0 = refused as a duplicate (its `arq:job:` or `arq:result:` key
 * exists). A last, odd argument is the trace context written beside each queued job
 * (`taskline:trace:<job id>`, with the job's expiry). The duplicate check and the writes happen
 * in one atomic step.
 */
import {
  FAIR_CLOCK_SUFFIX,
  FAIR_LANE_INFIX,
  FAIR_TURNS_SUFFIX,
  JOB_KEY_PREFIX,
  RESULT_KEY_PREFIX,
  TRACE_KEY_PREFIX,
  WAKE_KEY_SUFFIX,
} from "./keys.js";

export const ENQUEUE_SCRIPT = `
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3..]: job id, job JSON, job id, job JSON, ...; then, only from a producer passing on a
-- trace, one more: the trace context (JSON) written beside each queued job, with its expiry.
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
local last, trace = #ARGV, false
if last % 2 == 1 then trace, last = ARGV[last], last - 1 end
local queued = {}
for i = 3, last, 2 do
  local id = ARGV[i]
  if redis.call('EXISTS', '${JOB_KEY_PREFIX}' .. id, '${RESULT_KEY_PREFIX}' .. id) == 0 then
    redis.call('SET', '${JOB_KEY_PREFIX}' .. id, ARGV[i + 1], 'PX', ARGV[2])
    if trace then redis.call('SET', '${TRACE_KEY_PREFIX}' .. id, trace, 'PX', ARGV[2]) end
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  -- Wake one idle worker now rather than at its next poll (bounded: a few tokens at most).
  redis.call('LPUSH', KEYS[1] .. '${WAKE_KEY_SUFFIX}', 1)
  redis.call('LTRIM', KEYS[1] .. '${WAKE_KEY_SUFFIX}', 0, 15)
end
return queued
`;

/**
 * The fair enqueue script: the same text as `taskline_producer.wire.ENQUEUE_FAIR_SCRIPT`. Per job
 * four arguments: id, JSON, fairness key ('' = none: straight into the queue), cost (its number
 * of commands); a last argument past them is the trace context, as for ENQUEUE_SCRIPT. A keyed job's id waits in its key's lane until the workers' turn-taking claims
 * it (docs/operations.md, "Fair turns").
 */
export const ENQUEUE_FAIR_SCRIPT = `
-- KEYS[1]: the queue; ARGV[1]: score (epoch ms); ARGV[2]: job TTL in ms;
-- ARGV[3..]: job id, job JSON, fairness key, cost (commands in the job), job id, ...; then, only
-- from a producer passing on a trace, one more: the trace context (JSON) written beside each
-- queued job, with its expiry.
-- Returns one integer per job: 1 = queued, 0 = refused as a duplicate.
-- A job with an empty fairness key goes straight into the queue, as with the plain script.
local last, trace = #ARGV, false
if (last - 2) % 4 == 1 then trace, last = ARGV[last], last - 1 end
local queued, clock = {}, nil
for i = 3, last, 4 do
  local id, key = ARGV[i], ARGV[i + 2]
  if redis.call('EXISTS', '${JOB_KEY_PREFIX}' .. id, '${RESULT_KEY_PREFIX}' .. id) == 0 then
    redis.call('SET', '${JOB_KEY_PREFIX}' .. id, ARGV[i + 1], 'PX', ARGV[2])
    if trace then redis.call('SET', '${TRACE_KEY_PREFIX}' .. id, trace, 'PX', ARGV[2]) end
    if key == '' then
      redis.call('ZADD', KEYS[1], ARGV[1], id)
    else
      redis.call('RPUSH', KEYS[1] .. '${FAIR_LANE_INFIX}' .. key, ARGV[1] .. ' ' .. ARGV[i + 3] .. ' ' .. id)
      clock = clock or redis.call('GET', KEYS[1] .. '${FAIR_CLOCK_SUFFIX}') or '0'
      redis.call('ZADD', KEYS[1] .. '${FAIR_TURNS_SUFFIX}', 'NX', clock, key)
    end
    queued[#queued + 1] = 1
  else
    queued[#queued + 1] = 0
  end
end
if #queued > 0 then
  redis.call('LPUSH', KEYS[1] .. '${WAKE_KEY_SUFFIX}', 1)
  redis.call('LTRIM', KEYS[1] .. '${WAKE_KEY_SUFFIX}', 0, 15)
end
return queued
`;
