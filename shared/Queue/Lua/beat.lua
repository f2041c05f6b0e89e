-- Registers a consumer or records its heartbeat.
-- KEYS[1]: conveyor:{q}:consumers  zset  consumer id -> last heartbeat (ms, Redis time)
-- ARGV[1]: consumer id
-- Returns: { now ms, 1 if the consumer was registered before this call, else 0 }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZADD', KEYS[1], now, ARGV[1])
return { now, known }
