-- Registers a consumer (the first beat of a session) or records its heartbeat.
-- KEYS[1]: conveyor:{q}:consumers  zset  consumer id -> last heartbeat (ms, Redis time; 0 = taken for dead)
-- ARGV[1]: consumer id
-- ARGV[2]: 1 to register, 0 to beat
-- Returns: { now ms, 1 } when recorded; { now ms, 0 } when a beat finds the consumer taken for dead
--          (its claims are being or were recovered): nothing written, the session must end
local now = now_ms()
if ARGV[2] ~= '1' then
  local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not beat or tonumber(beat) == 0 then
    return { now, 0 }
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return { now, 1 }
