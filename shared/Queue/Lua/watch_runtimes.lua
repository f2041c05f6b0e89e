-- Starts the custodian's look at the runtimes of a queue. Their liveness is their presence, which lives in another
-- hash slot and in PostgreSQL, so no script can check it: the custodian checks presence after this call and before
-- release.lua. The claim token counter it reads is the fence between the two: a claim with a later token was made
-- after this call, possibly by a runtime that came back online meanwhile, and release.lua leaves it alone.
-- KEYS[1]: conveyor:{q}:seq       string  claim token counter
-- KEYS[2]: conveyor:{q}:expiring  zset    runtime consumer id -> its earliest lease deadline, or earlier
-- ARGV[1]: how many runtime consumers with a lease that may have expired to name at most
-- Returns: { fence (the latest claim token issued; 0 when none), then the runtime consumers whose earliest lease
--            deadline may have passed }
local result = { tonumber(redis.call('GET', KEYS[1])) or 0 }
local due = redis.call('ZRANGE', KEYS[2], '-inf', now_ms(), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, cid in ipairs(due) do
  result[#result + 1] = cid
end
return result
