-- Gives dead jobs a fresh set of attempts: back to the end of the ready list.
-- KEYS[1]: conveyor:{q}:dead   zset  id -> died at (ms)
-- KEYS[2]: conveyor:{q}:jobs   hash  id -> record
-- KEYS[3]: conveyor:{q}:ready  list  ids ready to run
-- ARGV[1]: wake-up channel
-- ARGV[2]: how many jobs at most when no ids are given (oldest dead first)
-- ARGV[3..]: job ids to requeue; none = the oldest ARGV[2] dead jobs
-- Returns: how many jobs were requeued
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
local back = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if redis.call('ZREM', KEYS[1], id) == 1 and record then
    local ok, job = pcall(cjson.decode, record)
    if not ok then job = { type = '', payload = record, attempt = 0, maxAttempts = 1 } end
    job.attempt = 0
    job.diedAt = nil
    redis.call('HSET', KEYS[2], id, cjson.encode(job))
    back[#back + 1] = id
  end
end
if #back > 0 then
  redis.call('RPUSH', KEYS[3], unpack(back))
  redis.call('PUBLISH', ARGV[1], #back)
end
return #back
