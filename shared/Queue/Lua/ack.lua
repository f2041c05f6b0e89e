-- Acknowledges finished jobs: they leave Redis for good.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:jobs            hash  id -> record (claim.lua left every claimed job in the current layout)
-- KEYS[3]: conveyor:{q}:state           hash  id -> state
-- KEYS[4]: (runtimes) conveyor:{q}:leases:<cid>  zset  id -> lease deadline: the acked jobs' leases end too
-- KEYS[last]: conveyor:{q}:history  hash  "<minute>:<e|p|f>" -> jobs (count in _lib.lua); always the last entry
-- ARGV[1..]: pairs of (job id, claim token)
-- Returns: per pair 1 = acked, 0 = this consumer no longer holds that claim (nothing changed)
local history = table.remove(KEYS)
local ids, held = held_claims(KEYS[1], 1, 2)
local result, done = {}, {}
for n, id in ipairs(ids) do
  if held[n] then
    done[#done + 1] = id
    result[n] = 1
  else
    result[n] = 0
  end
end
chunked('ZREM', KEYS[1], done)
chunked('HDEL', KEYS[2], done)
chunked('HDEL', KEYS[3], done)
if KEYS[4] then
  chunked('ZREM', KEYS[4], done)
end
count(history, 'p', #done)
return result
