-- Gives back claims of a runtime counting the attempt (give_back in _lib.lua): all the claims it made up to a fence
-- when its runtime went offline or was deleted, or only those whose lease expired while it kept beating. A runtime
-- consumer that holds nothing afterwards leaves the queue's consumers.
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat; +inf for runtime consumers
-- KEYS[2]: conveyor:{q}:inflight:<cid>  zset  id -> claim token of this runtime
-- KEYS[3]: conveyor:{q}:leases:<cid>    zset  id -> lease deadline (ms)
-- KEYS[4]: conveyor:{q}:expiring        zset  runtime consumer id -> its earliest lease deadline, or earlier
-- KEYS[5]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[6]: conveyor:{q}:jobs            hash  id -> record
-- KEYS[7]: conveyor:{q}:state           hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[8]: conveyor:{q}:dead            zset  id -> died at (ms)
-- KEYS[last]: conveyor:{q}:history  hash  "<minute>:<e|p|f>" -> jobs (count in _lib.lua); always the last entry
-- ARGV[1]: wake-up channel
-- ARGV[2]: runtime consumer id
-- ARGV[3]: fence: give back every claim with a token up to this one (from watch_runtimes.lua, read before the runtime
--          was found offline); -1: give back only the claims whose lease has expired
-- ARGV[4]: how many claims to give back at most
-- ARGV[5]: lastError of the jobs given back
-- Returns: { requeued, killed, 1 when claims to give back may be left (call again) else 0 }
local history = table.remove(KEYS)
local now = now_ms()
local fence, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local ids, more
if fence >= 0 then
  ids = redis.call('ZRANGE', KEYS[2], '-inf', fence, 'BYSCORE', 'LIMIT', 0, limit)
  more = #ids == limit
else
  local expired = redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  more = #expired == limit
  ids = {}
  for _, id in ipairs(expired) do
    if redis.call('ZSCORE', KEYS[2], id) then
      ids[#ids + 1] = id
    end
  end
  -- A lease without a claim cannot happen (every script that ends a claim ends its lease); drop any all the same.
  chunked('ZREM', KEYS[3], expired)
end
local requeued, killed = give_back(KEYS[6], KEYS[7], KEYS[5], KEYS[8], ARGV[1], ids, ARGV[5], now)
chunked('ZREM', KEYS[2], ids)
chunked('ZREM', KEYS[3], ids)
-- Keep the index exact for this runtime: its earliest deadline now, or out with it when it holds nothing.
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
elseif first[2] then
  redis.call('ZADD', KEYS[4], first[2], ARGV[2])
else
  redis.call('ZREM', KEYS[4], ARGV[2])
end
count(history, 'f', requeued + killed, now)
return { requeued, killed, more and 1 or 0 }
