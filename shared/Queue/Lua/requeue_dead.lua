-- Gives dead jobs a fresh set of attempts: back to the end of the ready list, last error kept.
-- KEYS[1]: conveyor:{q}:dead      zset  id -> died at (ms)
-- KEYS[2]: conveyor:{q}:jobs      hash  id -> record
-- KEYS[3]: conveyor:{q}:state     hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[4]: conveyor:{q}:ready     list  ids ready to run
-- ARGV[1]: wake-up channel
-- ARGV[2]: how many jobs at most when no ids are given (oldest dead first)
-- ARGV[3..]: job ids to requeue; none = the oldest ARGV[2] dead jobs
-- Returns: how many jobs were requeued
local now = now_ms()
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local back = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local s = job_state(KEYS[2], KEYS[3], id)
    if s then
      local _, max, _, err = parse_state(s)
      redis.call('HSET', KEYS[3], id, format_state(0, max, now, err))
      back[#back + 1] = id
    end
  end
end
if #back > 0 then
  chunked('RPUSH', KEYS[4], back)
  redis.call('PUBLISH', ARGV[1], #back)
end
return #back
