-- Extends the leases of a runtime's claims that it still holds: each expires ARGV[1] ms from now.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token of this runtime
-- KEYS[2]: conveyor:{q}:leases:<cid>    zset  id -> lease deadline (ms)
-- ARGV[1]: lease (ms)
-- ARGV[2..]: pairs of (job id, claim token)
-- Returns: { the new deadline ms, then per pair 1 = extended, 0 = this runtime no longer holds that claim (nothing changed) }
-- A later deadline keeps conveyor:{q}:expiring (a lower bound of each runtime's earliest deadline) right as it is.
local deadline = now_ms() + tonumber(ARGV[1])
local result, leases = { deadline }, {}
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    leases[#leases + 1] = deadline
    leases[#leases + 1] = ARGV[i]
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
chunked('ZADD', KEYS[2], leases)
return result
