-- Keeps the dead set bounded: drops jobs older than the age limit, then the oldest beyond the count.
-- KEYS[1]: conveyor:{q}:dead      zset  id -> died at (ms)
-- KEYS[2]: conveyor:{q}:jobs      hash  id -> record (header and payload)
-- KEYS[3]: conveyor:{q}:state     hash  id -> state
-- KEYS[4]: conveyor:{q}:payloads  hash  id -> payload of a job stored by the second layout
-- ARGV[1]: most dead jobs to keep
-- ARGV[2]: oldest age to keep (ms)
-- ARGV[3]: how many jobs to drop at most in this call
-- ARGV[4]: payload bytes to free at most in this call (one job is always dropped): freeing is what takes the time
-- Returns: { how many jobs were dropped, 1 when more may be due (call again) else 0 }
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. (now_ms() - tonumber(ARGV[2])), 'BYSCORE', 'LIMIT', 0, limit)
local excess = redis.call('ZCARD', KEYS[1]) - #ids - tonumber(ARGV[1])
if excess > 0 and #ids < limit then
  local more = redis.call('ZRANGE', KEYS[1], #ids, #ids + math.min(excess, limit - #ids) - 1)
  for _, id in ipairs(more) do ids[#ids + 1] = id end
end
local more = #ids == limit and 1 or 0
local bytes = 0
local second = redis.call('EXISTS', KEYS[4]) == 1
for n, id in ipairs(ids) do
  bytes = bytes + redis.call('HSTRLEN', KEYS[2], id) + (second and redis.call('HSTRLEN', KEYS[4], id) or 0)
  if n > 1 and bytes > tonumber(ARGV[4]) then
    for i = #ids, n, -1 do ids[i] = nil end
    more = 1
    break
  end
end
chunked('ZREM', KEYS[1], ids)
chunked('HDEL', KEYS[2], ids)
chunked('HDEL', KEYS[3], ids)
if second then
  chunked('HDEL', KEYS[4], ids)
end
return { #ids, more }
