-- Watches whether anything serves a queue: ready jobs and no live consumer. Called by the scheduler on each pass.
-- KEYS[1]: conveyor:{q}:ready      list  ready job ids
-- KEYS[2]: conveyor:{q}:consumers  zset  consumer id -> last heartbeat (ms, Redis time; 0 = taken for dead)
-- KEYS[3]: conveyor:{q}:unserved   string, since when (ms, Redis time) the queue has had ready jobs and no live consumer
-- ARGV[1]: consumer timeout, ms: a consumer whose last heartbeat is older is not live
-- Returns: { ms the queue has gone unserved (-1: it is served, or has no ready job; the mark is cleared), ready jobs }
local ready = redis.call('LLEN', KEYS[1])
local now = now_ms()
if ready == 0 or redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[1]), '+inf') > 0 then
  redis.call('DEL', KEYS[3])
  return { -1, ready }
end
redis.call('SET', KEYS[3], now, 'NX')
return { now - tonumber(redis.call('GET', KEYS[3])), ready }
