-- Adds a batch of jobs to a queue. A job whose id already exists is left untouched (idempotent).
-- KEYS[1]: conveyor:{q}:jobs        hash  id -> record: header JSON (type, maxAttempts, traceParent, enqueuedAt, and
--                                         dueAt when one was given), a newline, the payload (raw JSON); written once.
--                                         No state is written: a job without one is on its first attempt (_lib.lua)
-- KEYS[2]: conveyor:{q}:ready       list  ids ready to run
-- KEYS[3]: conveyor:{q}:scheduled   zset  id -> due time (ms)
-- KEYS[4]: conveyor:{q}:registered  string, present while the queue is listed in conveyor:queues
-- KEYS[5]: conveyor:{q}:idle        string, since when (ms) the custodian has seen the queue empty
-- KEYS[last]: conveyor:{q}:history  hash  "<minute>:<e|p|f>" -> jobs (count in _lib.lua); always the last entry
-- ARGV[1]: wake-up channel, published to when a job became ready
-- ARGV[2..]: groups of (job id, header JSON without its closing brace, payload, due)
--            due is "" for now, "+<ms>" for a delay, "@<ms>" for an absolute Unix time in ms
-- Returns: { -1 } when the queue is not registered (nothing written: register it, then call again),
--          else { now ms, then per job 1 = ready, 2 = scheduled, 0 = duplicate (nothing written) }
local history = table.remove(KEYS)
if redis.call('EXISTS', KEYS[4]) == 0 then
  return { -1 }
end
redis.call('DEL', KEYS[5])
local now = now_ms()
local ids = {}
for i = 2, #ARGV, 4 do
  ids[#ids + 1] = ARGV[i]
end
-- One read for the batch: which ids are taken (an id twice in the batch is taken by its first job).
local existing = gathered('HMGET', KEYS[1], ids)
local result = { now }
local taken, records, ready, scheduled = {}, {}, {}, {}
for n, id in ipairs(ids) do
  local i = 4 * n - 2
  local due = ARGV[i + 3]
  local at = now
  if string.sub(due, 1, 1) == '+' then
    at = now + tonumber(string.sub(due, 2))
  elseif string.sub(due, 1, 1) == '@' then
    at = tonumber(string.sub(due, 2))
  end
  if existing[n] or taken[id] then
    result[n + 1] = 0
  else
    taken[id] = true
    records[#records + 1] = id
    if due == '' then
      records[#records + 1] = ARGV[i + 1] .. ',"enqueuedAt":' .. now .. '}\n' .. ARGV[i + 2]
    else
      records[#records + 1] = ARGV[i + 1] .. ',"enqueuedAt":' .. now .. ',"dueAt":' .. at .. '}\n' .. ARGV[i + 2]
    end
    if at > now then
      scheduled[#scheduled + 1] = at
      scheduled[#scheduled + 1] = id
      result[n + 1] = 2
    else
      ready[#ready + 1] = id
      result[n + 1] = 1
    end
  end
end
chunked('HSET', KEYS[1], records)
chunked('ZADD', KEYS[3], scheduled)
if #ready > 0 then
  chunked('RPUSH', KEYS[2], ready)
  redis.call('PUBLISH', ARGV[1], #ready)
end
count(history, 'e', #ready + #scheduled / 2, now)
return result
