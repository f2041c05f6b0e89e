-- Schedules failed jobs for another attempt after a backoff, keeping the error. Touches no payload.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:state           hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[3]: conveyor:{q}:scheduled       zset  id -> due time (ms)
-- KEYS[4]: (runtimes) conveyor:{q}:leases:<cid>  zset  id -> lease deadline: the jobs' leases end too
-- KEYS[last]: conveyor:{q}:history  hash  "<minute>:<e|p|f>" -> jobs (count in _lib.lua); always the last entry
-- ARGV[1..]: groups of (job id, claim token, attempts so far, max attempts, backoff ms, error text)
-- Returns: per group 1 = scheduled, 0 = this consumer no longer holds that claim (nothing changed)
local history = table.remove(KEYS)
local now = now_ms()
local ids, held = held_claims(KEYS[1], 1, 6)
local result, done, states, due = {}, {}, {}, {}
for n, id in ipairs(ids) do
  if held[n] then
    local i = 6 * n - 5
    local at = now + tonumber(ARGV[i + 4])
    states[#states + 1] = id
    states[#states + 1] = format_state(ARGV[i + 2], ARGV[i + 3], at, ARGV[i + 5])
    done[#done + 1] = id
    due[#due + 1] = at
    due[#due + 1] = id
    result[n] = 1
  else
    result[n] = 0
  end
end
chunked('HSET', KEYS[2], states)
chunked('ZREM', KEYS[1], done)
chunked('ZADD', KEYS[3], due)
if KEYS[4] then
  chunked('ZREM', KEYS[4], done)
end
count(history, 'f', #done, now)
return result
