-- Starts a flush: stamps Conveyor's beat intake, freezes the buffered beats by renaming the live set to the
-- flushing set, and starts a new generation. Beats that arrive from now on land in a fresh live set; nothing ever
-- adds to a frozen set, so a flush can forget what it wrote without comparing scores (forget.lua), and the generation
-- fences a flush that outlived its frozen set: it cannot forget a newer freeze's beats. A flushing set that already
-- exists (a flush died, or one is running elsewhere) is not replaced: the caller drains it first, under the
-- generation it already has (one is given to a set frozen before generations existed).
-- The intake stamp is "<this run ms>|<intake unbroken since ms>": a run later than the gap after the previous one
-- means beats may not have been taken in between (the app or Redis was down), so the intake restarts now. The
-- sweeper holds off until it has been unbroken for a whole stale window.
-- KEYS[1]: conveyor:{presence}:beats       zset    runtime id -> latest beat to write (ms, Redis time)
-- KEYS[2]: conveyor:{presence}:flushing    zset    the beats a flush took and has not yet written
-- KEYS[3]: conveyor:{presence}:generation  string  generation of the flushing set (incremented per freeze)
-- KEYS[4]: conveyor:{presence}:intake      string  "<last run ms>|<unbroken since ms>"
-- ARGV[1]: longest gap between two runs that keeps the intake unbroken (ms)
-- Returns: {1 if the flushing set already existed else 0, entries in the flushing set, its generation}
--          ({0, 0, 0} when nothing is buffered)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last, since = string.match(redis.call('GET', KEYS[4]) or '', '^(%d+)|(%d+)$')
last, since = tonumber(last), tonumber(since)
if not last or now - last > tonumber(ARGV[1]) then
  since = now
end
redis.call('SET', KEYS[4], math.max(now, last or 0) .. '|' .. since)
if redis.call('EXISTS', KEYS[2]) == 1 then
  local generation = redis.call('GET', KEYS[3]) or redis.call('INCR', KEYS[3])
  return {1, redis.call('ZCARD', KEYS[2]), tonumber(generation)}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, 0}
end
local generation = redis.call('INCR', KEYS[3])
redis.call('RENAME', KEYS[1], KEYS[2])
return {0, redis.call('ZCARD', KEYS[2]), generation}
