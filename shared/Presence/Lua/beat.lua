-- Records a beat of a runtime known online; touches nothing for any other runtime. Every beat is kept exactly in
-- the seen hash (what the sweeper and the API read); the flush gets it only when the last_seen_at PostgreSQL holds is
-- the runtime's write window old, counting a beat a flush has frozen and is writing as held already. A runtime's own
-- window is between three quarters and all of the configured one, fixed by its id, so runtimes written together (a
-- mass reconnect, the flush after a PostgreSQL outage) drift apart instead of falling due together every window.
-- KEYS[1]: conveyor:{presence}:online    hash  runtime id -> "<token hash>:<ms PostgreSQL's last_seen_at holds at least>"
--                                              (a bare "<token hash>" means unknown: the next beat is written)
-- KEYS[2]: conveyor:{presence}:seen      hash  runtime id -> its latest beat (ms, Redis time)
-- KEYS[3]: conveyor:{presence}:beats     zset  runtime id -> latest beat the flush must write (ms, Redis time)
-- KEYS[4]: conveyor:{presence}:flushing  zset  beats a flush took and has not yet written
-- ARGV[1]: runtime id (canonical uuid)
-- ARGV[2]: SHA-256 hex of the token the beat presented
-- ARGV[3]: configured write window (ms; 0 writes every beat)
-- Returns: the beat time (ms, Redis time) when recorded; 0 when the runtime is not known online
--          (the caller takes the synchronous path); -1 when the token is wrong (nothing written)
local known = redis.call('HGET', KEYS[1], ARGV[1])
if not known then
  return 0
end
if string.sub(known, 1, 64) ~= ARGV[2] then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Never backwards, should the clock step back.
local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[1]))
if not seen or now > seen then
  redis.call('HSET', KEYS[2], ARGV[1], now)
end
local window = tonumber(ARGV[3])
-- The last 6 hex digits of a v4 or v7 uuid are random: a fraction in [0, 1) that takes off up to a quarter.
window = window - math.floor(window / 4 * tonumber(string.sub(ARGV[1], -6), 16) / 16777216)
local written = tonumber(string.sub(known, 66))
if not written or now - written >= window then
  local frozen = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]))
  if not frozen or now - frozen >= window then
    redis.call('ZADD', KEYS[3], 'GT', now, ARGV[1])
  end
end
return now
