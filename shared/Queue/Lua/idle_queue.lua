-- Watches whether a queue is empty, and forgets it once it has been empty long enough. Empty means no
-- job in any state and no consumer. The custodian takes the queue out of conveyor:queues (another
-- hash slot) before it asks to drop it, and lists it again when this script keeps it.
-- KEYS[1]: conveyor:{q}:jobs        hash  id -> record
-- KEYS[2]: conveyor:{q}:ready       list
-- KEYS[3]: conveyor:{q}:scheduled   zset
-- KEYS[4]: conveyor:{q}:dead        zset
-- KEYS[5]: conveyor:{q}:consumers   zset
-- KEYS[6]: conveyor:{q}:idle        string, since when (ms) the queue has been seen empty
-- KEYS[7]: conveyor:{q}:registered  string, present while the queue is listed; enqueue needs it
-- KEYS[8]: conveyor:{q}:seq         string, claim token counter
-- KEYS[9]: conveyor:{q}:watch       string, the custodian's visits (watch.lua)
-- KEYS[10]: conveyor:{q}:remote      string, when a runtime last asked for jobs (claim.lua)
-- KEYS[11]: conveyor:{q}:history     hash, the per-minute counters (count in _lib.lua)
-- ARGV[1]: how long (ms) the queue must have been empty
-- ARGV[2]: "observe" (only report) or "drop" (delete idle, registered, seq, watch, remote and history when still idle)
-- Returns: 1 = empty for at least ARGV[1] (and, for "drop", forgotten), 0 = not (nothing deleted)
local empty = redis.call('HLEN', KEYS[1]) == 0 and redis.call('LLEN', KEYS[2]) == 0
  and redis.call('ZCARD', KEYS[3]) == 0 and redis.call('ZCARD', KEYS[4]) == 0
  and redis.call('ZCARD', KEYS[5]) == 0
if not empty then
  redis.call('DEL', KEYS[6])
  return 0
end
local now = now_ms()
local since = tonumber(redis.call('GET', KEYS[6]))
if not since then
  redis.call('SET', KEYS[6], now)
  return 0
end
if now - since < tonumber(ARGV[1]) then
  return 0
end
if ARGV[2] == 'drop' then
  redis.call('DEL', KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11])
end
return 1
