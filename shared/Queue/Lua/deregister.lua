-- Removes a consumer that holds no claims; one that still holds some is left for the custodian.
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat
-- KEYS[2]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- ARGV[1]: consumer id
-- Returns: 1 = removed, 0 = still holds claims (kept)
if redis.call('ZCARD', KEYS[2]) > 0 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
