-- Records the custodian's visit and names the consumers it may take for dead. A consumer is dead when its last
-- heartbeat is older than the timeout AND the custodian has been watching the queue, without a gap, for longer
-- than the timeout: after a gap (Redis stalled, or no custodian ran) every consumer gets a full timeout from the
-- first visit after it, since it may have been unable to beat rather than dead.
-- KEYS[1]: conveyor:{q}:consumers  zset    consumer id -> last heartbeat (ms; 0 = taken for dead)
-- KEYS[2]: conveyor:{q}:watch      string  "<last visit ms>|<watching since ms>"
-- ARGV[1]: consumer timeout (ms)
-- ARGV[2]: longest gap between two visits that still counts as watching (ms)
-- Returns: { watching since ms, then the ids of the consumers recover.lua may take for dead }
local now = now_ms()
local timeout = tonumber(ARGV[1])
local last, since = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+)|(%d+)$')
last, since = tonumber(last), tonumber(since)
if not last or now - last > tonumber(ARGV[2]) then
  since = now
end
redis.call('SET', KEYS[2], now .. '|' .. since)
local result = { since }
local ids
if since > now - timeout then
  ids = redis.call('ZRANGE', KEYS[1], 0, 0, 'BYSCORE') -- only those already taken for dead
else
  ids = redis.call('ZRANGE', KEYS[1], '-inf', now - timeout, 'BYSCORE')
end
for _, id in ipairs(ids) do
  result[#result + 1] = id
end
return result
