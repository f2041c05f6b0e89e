-- Records a beat of a runtime known online; touches nothing for any other runtime.
-- KEYS[1]: conveyor:{presence}:online  hash  runtime id -> token hash (SHA-256 hex)
-- KEYS[2]: conveyor:{presence}:beats   zset  runtime id -> latest beat (ms, Redis time)
-- ARGV[1]: runtime id (canonical uuid)
-- ARGV[2]: SHA-256 hex of the token the beat presented
-- Returns: the beat time (ms, Redis time) when buffered; 0 when the runtime is not known online
--          (the caller takes the synchronous path); -1 when the token is wrong (nothing written)
local known = redis.call('HGET', KEYS[1], ARGV[1])
if not known then
  return 0
end
if known ~= ARGV[2] then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- GT: a beat never moves the buffered time backwards.
redis.call('ZADD', KEYS[2], 'GT', now, ARGV[1])
return now
