-- Hands claimed jobs that never started back to the front of the ready list, in their order.
-- The attempt is not counted: the job never ran.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[3]: (runtimes) conveyor:{q}:leases:<cid>  zset  id -> lease deadline: the jobs' leases end too
-- ARGV[1]: wake-up channel
-- ARGV[2..]: pairs of (job id, claim token), first to run first
-- Returns: how many jobs went back (claims this consumer no longer holds are skipped)
local ids, held = held_claims(KEYS[1], 2, 2)
local back = {}
for n = #ids, 1, -1 do
  if held[n] then
    back[#back + 1] = ids[n]
  end
end
if #back > 0 then
  chunked('ZREM', KEYS[1], back)
  if KEYS[3] then
    chunked('ZREM', KEYS[3], back)
  end
  -- LPUSH of the reversed list leaves the first job at the head (chunk by chunk too: each later chunk,
  -- holding earlier jobs, goes in front).
  chunked('LPUSH', KEYS[2], back)
  redis.call('PUBLISH', ARGV[1], #back)
end
return #back
