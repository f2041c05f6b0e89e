-- Ends a written batch of a flush: removes its runtimes from the flushing set, unless the set has been
-- frozen again since the caller read them (the generation moved on: another flush emptied it and a newer
-- freeze holds beats nobody has written yet). Within one generation nothing adds to the flushing set, so
-- an entry still there holds the very beat the caller read and wrote.
-- KEYS[1]: conveyor:{presence}:flushing    zset    the beats a flush took and has not yet written
-- KEYS[2]: conveyor:{presence}:generation  string  generation of the flushing set
-- ARGV[1]: the generation the caller read the runtimes in (from take.lua)
-- ARGV[2..]: runtime ids whose beats were written (callers send at most 1,000: unpack is bounded)
-- Returns: entries removed; -1 when the generation moved on (nothing removed)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
return redis.call('ZREM', KEYS[1], unpack(ARGV, 2))
