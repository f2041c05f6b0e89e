-- Schedules failed jobs for another attempt after a backoff, keeping the error.
-- KEYS[1]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[2]: conveyor:{q}:jobs            hash  id -> record
-- KEYS[3]: conveyor:{q}:scheduled       zset  id -> due time (ms)
-- ARGV[1..]: groups of (job id, claim token, attempts so far, backoff ms, error text)
-- Returns: per group 1 = scheduled, 0 = this consumer no longer holds that claim (nothing changed)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local result = {}
for i = 1, #ARGV, 5 do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  local record = redis.call('HGET', KEYS[2], id)
  if score and record and tonumber(score) == tonumber(ARGV[i + 1]) then
    local due = now + tonumber(ARGV[i + 3])
    local ok, job = pcall(cjson.decode, record)
    if not ok then job = { type = '', payload = record, attempt = 0, maxAttempts = 1 } end
    job.attempt = tonumber(ARGV[i + 2])
    job.lastError = ARGV[i + 4]
    job.dueAt = due
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', KEYS[2], id, cjson.encode(job))
    redis.call('ZADD', KEYS[3], due, id)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result
