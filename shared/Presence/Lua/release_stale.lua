-- Before the sweeper marks stale runtimes offline, takes them out of the online set unless a beat
-- newer than the cutoff is buffered (in the live set, or in the set a flush is writing). From here on
-- their beats take the synchronous path, which PostgreSQL serialises with the sweeper's fenced UPDATE,
-- so no beat accepted after this is lost.
-- KEYS[1]: conveyor:{presence}:online    hash  runtime id -> token hash
-- KEYS[2]: conveyor:{presence}:beats     zset  runtime id -> latest beat (ms, Redis time)
-- KEYS[3]: conveyor:{presence}:flushing  zset  beats a flush took and has not yet written
-- ARGV[1]: cutoff (ms, Redis time): a buffered beat at or after it means alive
-- ARGV[2..]: runtime ids that PostgreSQL found online with last_seen_at before the cutoff
-- Returns: the ids to mark offline (those without a fresh buffered beat)
local cutoff = tonumber(ARGV[1])
local function fresh(key, id)
  local score = redis.call('ZSCORE', key, id)
  return score and tonumber(score) >= cutoff
end
local stale = {}
for i = 2, #ARGV do
  if not fresh(KEYS[2], ARGV[i]) and not fresh(KEYS[3], ARGV[i]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    stale[#stale + 1] = ARGV[i]
  end
end
return stale
