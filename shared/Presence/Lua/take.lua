-- Starts a flush: freezes the buffered beats by renaming the live set to the flushing set. Beats that
-- arrive from now on land in a fresh live set, so the flush can forget what it wrote without comparing
-- scores, and never forgets a newer beat. A flushing set that already exists (a flush died, or one is
-- running elsewhere) is not replaced: the caller drains it first.
-- KEYS[1]: conveyor:{presence}:beats     zset  runtime id -> latest beat (ms, Redis time)
-- KEYS[2]: conveyor:{presence}:flushing  zset  the beats a flush took and has not yet written
-- Returns: {1 if the flushing set already existed else 0, entries in the flushing set}
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, redis.call('ZCARD', KEYS[2])}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0}
end
redis.call('RENAME', KEYS[1], KEYS[2])
return {0, redis.call('ZCARD', KEYS[2])}
