-- Adds a batch of jobs to a queue. A job whose id already exists is left untouched (idempotent).
-- KEYS[1]: conveyor:{q}:jobs       hash  job id -> record
-- KEYS[2]: conveyor:{q}:ready      list  ids ready to run
-- KEYS[3]: conveyor:{q}:scheduled  zset  id -> due time (ms)
-- ARGV[1]: wake-up channel, published to when a job became ready
-- ARGV[2..]: triples of (job id, record JSON without its closing brace, due)
--            due is "" for now, "+<ms>" for a delay, "@<ms>" for an absolute Unix time in ms
-- Returns: { now ms, then per job 1 = ready, 2 = scheduled, 0 = duplicate (nothing written) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local result = { now }
local ready = {}
for i = 2, #ARGV, 3 do
  local id, record, due = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local at = now
  if string.sub(due, 1, 1) == '+' then
    at = now + tonumber(string.sub(due, 2))
  elseif string.sub(due, 1, 1) == '@' then
    at = tonumber(string.sub(due, 2))
  end
  local full = record .. ',"enqueuedAt":' .. now .. ',"dueAt":' .. at .. '}'
  if redis.call('HSETNX', KEYS[1], id, full) == 0 then
    result[#result + 1] = 0
  elseif at > now then
    redis.call('ZADD', KEYS[3], at, id)
    result[#result + 1] = 2
  else
    ready[#ready + 1] = id
    result[#result + 1] = 1
  end
end
if #ready > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ready))
  redis.call('PUBLISH', ARGV[1], #ready)
end
return result
