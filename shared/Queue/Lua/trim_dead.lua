-- Keeps the dead set bounded: drops jobs older than the age limit, then the oldest beyond the count.
-- KEYS[1]: conveyor:{q}:dead  zset  id -> died at (ms)
-- KEYS[2]: conveyor:{q}:jobs  hash  id -> record
-- ARGV[1]: most dead jobs to keep
-- ARGV[2]: oldest age to keep (ms)
-- ARGV[3]: how many jobs to drop at most in this call
-- Returns: how many jobs were dropped
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])), 'BYSCORE', 'LIMIT', 0, limit)
local excess = redis.call('ZCARD', KEYS[1]) - #ids - tonumber(ARGV[1])
if excess > 0 and #ids < limit then
  local more = redis.call('ZRANGE', KEYS[1], #ids, #ids + math.min(excess, limit - #ids) - 1)
  for _, id in ipairs(more) do ids[#ids + 1] = id end
end
if #ids == 0 then
  return 0
end
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return #ids
