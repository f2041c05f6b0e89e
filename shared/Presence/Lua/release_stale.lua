-- Before the sweeper marks stale runtimes offline, takes them out of the online set unless a beat
-- newer than the cutoff is buffered (in the live set, or in the set a flush is writing). From here on
-- their beats take the synchronous path, which PostgreSQL serialises with the sweeper's fenced UPDATE,
-- so no beat accepted after this is lost. A beat buffered before the cutoff (acknowledged, never
-- written: PostgreSQL was away) is returned with its runtime: the flush only writes online rows, so
-- the sweeper's UPDATE writes it.
-- KEYS[1]: conveyor:{presence}:online    hash  runtime id -> token hash
-- KEYS[2]: conveyor:{presence}:beats     zset  runtime id -> latest beat (ms, Redis time)
-- KEYS[3]: conveyor:{presence}:flushing  zset  beats a flush took and has not yet written
-- ARGV[1]: cutoff (ms, Redis time): a buffered beat at or after it means alive
-- ARGV[2..]: runtime ids that PostgreSQL found online with last_seen_at before the cutoff
-- Returns: the runtimes to mark offline (those without a fresh buffered beat), flat: id, then its
--          newest buffered beat (ms, Redis time; 0 when none is buffered)
local cutoff = tonumber(ARGV[1])
local function score(key, id)
  local buffered = redis.call('ZSCORE', key, id)
  return buffered and tonumber(buffered) or 0
end
local stale = {}
for i = 2, #ARGV do
  local newest = math.max(score(KEYS[2], ARGV[i]), score(KEYS[3], ARGV[i]))
  if newest < cutoff then
    redis.call('HDEL', KEYS[1], ARGV[i])
    stale[#stale + 1] = ARGV[i]
    stale[#stale + 1] = newest
  end
end
return stale
