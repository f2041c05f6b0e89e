-- Deletes one dead job for good.
-- KEYS[1]: conveyor:{q}:dead      zset  id -> died at (ms)
-- KEYS[2]: conveyor:{q}:jobs      hash  id -> record
-- KEYS[3]: conveyor:{q}:state     hash  id -> state
-- KEYS[4]: conveyor:{q}:payloads  hash  id -> payload of a job stored by the second layout
-- ARGV[1]: job id
-- Returns: 1 = deleted, 0 = not in the dead set (nothing changed)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
