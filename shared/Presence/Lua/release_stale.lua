-- Before the sweeper marks silent runtimes offline, takes them out of the online and seen hashes unless a beat at
-- or after the cutoff is recorded (seen; or buffered, live or frozen, by a version that kept no seen hash). From
-- here on their beats take the synchronous path, which PostgreSQL serialises with the sweeper's fenced UPDATE, so
-- no beat accepted after this is lost. The newest beat recorded before the cutoff (inside the write window, or
-- acknowledged while PostgreSQL was away: never written) is returned with its runtime: the flush only writes online
-- rows, so the sweeper's UPDATE writes it.
-- KEYS[1]: conveyor:{presence}:online    hash  runtime id -> token hash (and the time PostgreSQL holds)
-- KEYS[2]: conveyor:{presence}:seen      hash  runtime id -> its latest beat (ms, Redis time)
-- KEYS[3]: conveyor:{presence}:beats     zset  runtime id -> latest beat to write (ms)
-- KEYS[4]: conveyor:{presence}:flushing  zset  beats a flush took and has not yet written
-- ARGV[1]: cutoff (ms, Redis time): a beat at or after it means alive
-- ARGV[2..]: runtime ids that PostgreSQL found online with last_seen_at before the cutoff
-- Returns: the runtimes to mark offline (those without a beat at or after the cutoff), flat: id, then its newest
--          recorded beat (ms, Redis time; 0 when Redis recorded none)
local cutoff = tonumber(ARGV[1])
local function newest(id)
  local latest = tonumber(redis.call('HGET', KEYS[2], id)) or 0
  for key = 3, 4 do
    local score = tonumber(redis.call('ZSCORE', KEYS[key], id))
    if score and score > latest then
      latest = score
    end
  end
  return latest
end
local stale = {}
for i = 2, #ARGV do
  local latest = newest(ARGV[i])
  if latest < cutoff then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    stale[#stale + 1] = ARGV[i]
    stale[#stale + 1] = latest
  end
end
return stale
