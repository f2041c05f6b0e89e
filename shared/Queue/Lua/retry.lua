-- Schedules failed jobs for another attempt after a backoff, keeping the error. Touches no payload.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:state           hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[3]: conveyor:{q}:scheduled       zset  id -> due time (ms)
-- KEYS[4]: (runtimes) conveyor:{q}:leases:<cid>  zset  id -> lease deadline: the jobs' leases end too
-- ARGV[1..]: groups of (job id, claim token, attempts so far, max attempts, backoff ms, error text)
-- Returns: per group 1 = scheduled, 0 = this consumer no longer holds that claim (nothing changed)
local now = now_ms()
local result, done, due = {}, {}, {}
for i = 1, #ARGV, 6 do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    local at = now + tonumber(ARGV[i + 4])
    redis.call('HSET', KEYS[2], id, format_state(ARGV[i + 2], ARGV[i + 3], at, ARGV[i + 5]))
    done[#done + 1] = id
    due[#due + 1] = at
    due[#due + 1] = id
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
chunked('ZREM', KEYS[1], done)
chunked('ZADD', KEYS[3], due)
if KEYS[4] then
  chunked('ZREM', KEYS[4], done)
end
return result
