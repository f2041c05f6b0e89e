-- Extends the leases of a runtime's claims that it still holds: each expires ARGV[1] ms from now.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token of this runtime
-- KEYS[2]: conveyor:{q}:leases:<cid>    zset  id -> lease deadline (ms)
-- ARGV[1]: lease (ms)
-- ARGV[2..]: pairs of (job id, claim token)
-- Returns: { the new deadline ms, then per pair 1 = extended, 0 = this runtime no longer holds that claim (nothing changed) }
-- A later deadline keeps conveyor:{q}:expiring (a lower bound of each runtime's earliest deadline) right as it is.
local deadline = now_ms() + tonumber(ARGV[1])
local ids, held = held_claims(KEYS[1], 2, 2)
local result, leases = { deadline }, {}
for n, id in ipairs(ids) do
  if held[n] then
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    result[n + 1] = 1
  else
    result[n + 1] = 0
  end
end
chunked('ZADD', KEYS[2], leases)
return result
