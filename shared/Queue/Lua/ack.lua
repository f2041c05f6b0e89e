-- Acknowledges finished jobs: they leave Redis for good.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:jobs            hash  id -> record
-- ARGV[1..]: pairs of (job id, claim token)
-- Returns: per pair 1 = acked, 0 = this consumer no longer holds that claim (nothing changed)
local result = {}
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result
