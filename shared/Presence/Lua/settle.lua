-- Settles a flushed batch after PostgreSQL committed it: forgets the beats it wrote, and forgets
-- runtimes the write did not touch (raced to offline, or deleted) so their next beat goes synchronous.
-- KEYS[1]: conveyor:{presence}:online  hash  runtime id -> token hash
-- KEYS[2]: conveyor:{presence}:beats   zset  runtime id -> latest beat (ms, Redis time)
-- ARGV[1..]: triples of (runtime id, beat time the flush read, 1 if the UPDATE touched the row else 0)
-- Returns: how many beats left the buffer (a beat newer than the one flushed stays for the next flush)
local removed = 0
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[2], id)
    removed = removed + 1
  end
  if ARGV[i + 2] == '0' then
    redis.call('HDEL', KEYS[1], id)
  end
end
return removed
