-- Gives the claims of a consumer that stopped heartbeating back to the queue. Recovery counts as an
-- attempt, so a job that keeps killing its consumer ends in the dead set instead of looping.
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat (ms; 0 = taken for dead)
-- KEYS[2]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[3]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[4]: conveyor:{q}:jobs            hash  id -> record
-- KEYS[5]: conveyor:{q}:state           hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[6]: conveyor:{q}:dead            zset  id -> died at (ms)
-- KEYS[7]: conveyor:{q}:watch           string "<last visit ms>|<watching since ms>" (watch.lua)
-- KEYS[last]: conveyor:{q}:history  hash  "<minute>:<e|p|f>" -> jobs (count in _lib.lua); always the last entry
-- ARGV[1]: wake-up channel
-- ARGV[2]: consumer id
-- ARGV[3]: consumer timeout (ms): the consumer is dead when its heartbeat, and the time the custodian started
--          watching without a gap, are both older than this
-- ARGV[4]: how many claims to handle at most
-- Returns: { requeued, killed, claims left } or { -1 } when the consumer is alive (nothing changed)
local history = table.remove(KEYS)
local now = now_ms()
local beat = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))
local since = tonumber(string.match(redis.call('GET', KEYS[7]) or '', '|(%d+)$')) or now
if beat and beat ~= 0 and math.max(beat, since) > now - tonumber(ARGV[3]) then
  return { -1 }
end
-- Dead for good from here: score 0 refuses its next beat and claim, so a consumer that was only slow
-- learns it lost its claims and ends its session, even while recovery takes several calls.
if beat and beat ~= 0 then
  redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[2])
end
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[4]) - 1)
local err = 'consumer ' .. ARGV[2] .. ' stopped heartbeating while it held this job'
local requeued, killed = give_back(KEYS[4], KEYS[5], KEYS[3], KEYS[6], ARGV[1], ids, err, now)
chunked('ZREM', KEYS[2], ids)
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
count(history, 'f', requeued + killed, now)
return { requeued, killed, left }
