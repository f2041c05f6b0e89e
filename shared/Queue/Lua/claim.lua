-- Claims up to N ready jobs for one consumer, fenced by a fresh claim token.
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat
-- KEYS[2]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[3]: conveyor:{q}:inflight:<cid>  zset  id -> claim token of this consumer
-- KEYS[4]: conveyor:{q}:jobs            hash  id -> record
-- KEYS[5]: conveyor:{q}:seq             string, claim token counter
-- ARGV[1]: consumer id
-- ARGV[2]: how many jobs to claim at most
-- Returns: { -1 } when the consumer is not registered (nothing claimed),
--          else { now ms, claim token, id1, record1, id2, record2, ... }
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return { -1 }
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('LPOP', KEYS[2], tonumber(ARGV[2]))
if not ids then
  return { now, 0 }
end
local token = redis.call('INCR', KEYS[5])
local result = { now, token }
local members = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[4], id)
  -- An id without a record cannot run; dropping it is the only safe move.
  if record then
    members[#members + 1] = token
    members[#members + 1] = id
    result[#result + 1] = id
    result[#result + 1] = record
  end
end
if #members > 0 then
  redis.call('ZADD', KEYS[3], unpack(members))
end
return result
