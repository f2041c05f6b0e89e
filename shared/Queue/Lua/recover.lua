-- Gives the claims of a consumer that stopped heartbeating back to the queue. Recovery counts as an
-- attempt, so a job that keeps killing its consumer ends in the dead set instead of looping.
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat (ms)
-- KEYS[2]: conveyor:{q}:inflight:<cid>  zset  id -> claim token
-- KEYS[3]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[4]: conveyor:{q}:jobs            hash  id -> record
-- KEYS[5]: conveyor:{q}:dead            zset  id -> died at (ms)
-- ARGV[1]: wake-up channel
-- ARGV[2]: consumer id
-- ARGV[3]: consumer timeout (ms): the consumer is dead when its heartbeat is older than this
-- ARGV[4]: how many claims to handle at most
-- Returns: { requeued, killed, claims left } or { -1 } when the consumer is alive (nothing changed)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local beat = redis.call('ZSCORE', KEYS[1], ARGV[2])
if beat and tonumber(beat) > now - tonumber(ARGV[3]) then
  return { -1 }
end
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[4]) - 1)
local requeued, killed = {}, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local record = redis.call('HGET', KEYS[4], id)
  if record then
    local ok, job = pcall(cjson.decode, record)
    if not ok then job = { type = '', payload = record, attempt = 0, maxAttempts = 1 } end
    job.attempt = (tonumber(job.attempt) or 0) + 1
    job.lastError = 'consumer ' .. ARGV[2] .. ' stopped heartbeating while it held this job'
    if job.attempt >= (tonumber(job.maxAttempts) or 1) then
      job.diedAt = now
      redis.call('ZADD', KEYS[5], now, id)
      killed = killed + 1
    else
      requeued[#requeued + 1] = id
    end
    redis.call('HSET', KEYS[4], id, cjson.encode(job))
  end
end
if #requeued > 0 then
  redis.call('RPUSH', KEYS[3], unpack(requeued))
  redis.call('PUBLISH', ARGV[1], #requeued)
end
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return { #requeued, killed, left }
