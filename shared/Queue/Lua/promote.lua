-- Moves due scheduled jobs (delayed jobs and retries) to the ready list, oldest due first.
-- KEYS[1]: conveyor:{q}:scheduled  zset  id -> due time (ms)
-- KEYS[2]: conveyor:{q}:ready      list  ids ready to run
-- ARGV[1]: wake-up channel
-- ARGV[2]: how many jobs to move at most
-- Returns: how many jobs were moved
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now_ms(), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  return 0
end
chunked('ZREM', KEYS[1], ids)
chunked('RPUSH', KEYS[2], ids)
redis.call('PUBLISH', ARGV[1], #ids)
return #ids
