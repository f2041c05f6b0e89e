-- Ends a written batch of a flush. Its runtimes leave the flushing set, unless the set has been frozen again since
-- the caller read them (the generation moved on: another flush emptied it and a newer freeze holds beats nobody has
-- written yet); within one generation nothing adds to the flushing set, so an entry still there holds the very beat
-- the caller read and wrote. Either way, what the write did is recorded: a written runtime's online entry learns the
-- time PostgreSQL now holds (its next write waits a write window from there), and a runtime the UPDATE skipped (no
-- longer online in PostgreSQL: swept or deleted) leaves the online and seen hashes, so its next beat goes through the
-- synchronous path.
-- KEYS[1]: conveyor:{presence}:flushing    zset    the beats a flush took and has not yet written
-- KEYS[2]: conveyor:{presence}:generation  string  generation of the flushing set
-- KEYS[3]: conveyor:{presence}:online      hash    runtime id -> "<token hash>:<ms PostgreSQL holds at least>"
-- KEYS[4]: conveyor:{presence}:seen        hash    runtime id -> its latest beat (ms)
-- ARGV[1]: the generation the caller read the runtimes in (from take.lua)
-- ARGV[2..]: pairs of runtime id and the beat time written (ms), or 0 when the UPDATE skipped it
--            (callers send at most 1,000 pairs: the ZREM below unpacks the ids)
-- Returns: entries removed; -1 when the generation moved on (nothing removed)
local ids = {}
for i = 2, #ARGV, 2 do
  local id, written = ARGV[i], tonumber(ARGV[i + 1])
  ids[#ids + 1] = id
  if written == 0 then
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  else
    local known = redis.call('HGET', KEYS[3], id)
    local before = known and tonumber(string.sub(known, 66))
    if known and (not before or written > before) then
      redis.call('HSET', KEYS[3], id, string.sub(known, 1, 64) .. ':' .. written)
    end
  end
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
return redis.call('ZREM', KEYS[1], unpack(ids))
