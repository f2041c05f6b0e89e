-- Claims up to N ready jobs for one consumer, fenced by a fresh claim token. A processor must be live (its heartbeat in
-- this queue); a runtime (ARGV[6] given) was found online by the caller, since its liveness is its presence, and each
-- of its claims carries a lease instead: it expires unless extended (extend.lua; release.lua gives it back).
-- KEYS[1]: conveyor:{q}:consumers       zset  consumer id -> last heartbeat (ms; 0 = taken for dead; +inf = a runtime)
-- KEYS[2]: conveyor:{q}:ready           list  ids ready to run
-- KEYS[3]: conveyor:{q}:inflight:<cid>  zset  id -> claim token of this consumer
-- KEYS[4]: conveyor:{q}:jobs            hash  id -> record "<header JSON>\n<payload>" (_lib.lua)
-- KEYS[5]: conveyor:{q}:state           hash  id -> "attempt|maxAttempts|dueAt|lastError" (_lib.lua: when there is one)
-- KEYS[6]: conveyor:{q}:payloads        hash  id -> payload of a job stored by the second layout (joined here, once)
-- KEYS[7]: conveyor:{q}:seq             string, claim token counter: token = max(counter + 1, now ms * 1000), so tokens only
--                                       grow (even across a queue's drop) and floor(token / 1000) is the claim's time (ms)
-- KEYS[8]: (runtimes) conveyor:{q}:leases:<cid>  zset  id -> lease deadline (ms)
-- KEYS[9]: (runtimes) conveyor:{q}:expiring      zset  runtime consumer id -> its earliest lease deadline, or earlier
-- KEYS[10]: (runtimes) conveyor:{q}:remote        string, when a runtime last asked this queue for jobs (ms): processors
--                                                 serving every queue leave it alone, so a job is never claimed by an app
--                                                 without its handler; set even when nothing is ready (a runtime waits first)
-- ARGV[1]: consumer id
-- ARGV[2]: how many jobs to claim at most
-- ARGV[3]: consumer timeout (ms): a consumer whose heartbeat is older may be recovered at any moment
-- ARGV[4]: record bytes per claim: jobs past it stay at the head of the ready list (one job is always claimed)
-- ARGV[5]: the largest payload a job may have (bytes): records are read in calls that cannot pass ARGV[4] by much
-- ARGV[6]: (runtimes) lease (ms): the claims expire this long from now unless extended
-- Returns: { -1 } when the processor is unknown, taken for dead or past the timeout (nothing claimed),
--          else { now ms, claim token, then per job: id, record, state (nil: never claimed before, a small record
--          whose state the reader takes from its header) }
local now = now_ms()
local lease = tonumber(ARGV[6])
if not lease then
  local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not beat or tonumber(beat) <= now - tonumber(ARGV[3]) then
    return { -1 }
  end
else
  redis.call('SET', KEYS[10], now)
end
local ids = redis.call('LPOP', KEYS[2], tonumber(ARGV[2]))
if not ids then
  return { now, 0 }
end
-- The token is max(counter + 1, now * 1000): it only grows (a new queue, or one the custodian dropped and forgot, starts
-- above any token its predecessor issued, so a token read as a fence by watch_runtimes.lua is never reached again by
-- an older claim's), and floor(token / 1000) is the claim's Redis time in ms (the dashboard's "running since") as long
-- as a queue makes fewer than 1,000 claims per ms, far above what one Redis runs.
local token = redis.call('INCR', KEYS[7])
if token < now * 1000 then
  token = now * 1000
  redis.call('SET', KEYS[7], token)
end

-- Records first, a few calls per batch: as many per call as fit the budget at the largest size, so a call never
-- reads far past it. The jobs past the budget go back to the head of the ready list, in their order.
local limit = tonumber(ARGV[4])
local step = math.min(1000, math.max(1, math.floor(limit / tonumber(ARGV[5]))))
local records, bytes, kept = {}, 0, #ids
for i = 1, #ids, step do
  local got = redis.call('HMGET', KEYS[4], unpack(ids, i, math.min(i + step - 1, #ids)))
  for k = 1, #got do
    local n = i + k - 1
    bytes = bytes + (got[k] and #got[k] or 0)
    if n > 1 and bytes > limit then
      kept = n - 1
      break
    end
    records[n] = got[k]
  end
  if kept < #ids then
    local rest = {}
    for n = #ids, kept + 1, -1 do rest[#rest + 1] = ids[n] end
    chunked('LPUSH', KEYS[2], rest)
    break
  end
end

local states = gathered('HMGET', KEYS[5], ids, 1, kept)
-- Jobs of the second layout exist only while their payloads hash does.
local second = redis.call('EXISTS', KEYS[6]) == 1
local result = { now, token }
local members, leases, written = {}, {}, {}
for n = 1, kept do
  local id, record, s = ids[n], records[n], states[n]
  if record and not s then
    local newline = string.find(record, '\n', 1, true)
    if newline then
      -- Its first claim. A small record stays the job's only entry (the reader, and a recovery, take the state from
      -- the header); a larger one gets its state now, so that no transition ever reads it (_lib.lua).
      if #record > SMALL_RECORD then
        s = first_state(string.sub(record, 1, newline - 1))
        written[#written + 1] = id
        written[#written + 1] = s
      end
    else
      -- A job of the first layout: rewritten once, then read.
      s = job_state(KEYS[4], KEYS[5], id)
      record = redis.call('HGET', KEYS[4], id)
    end
  elseif record and second and not string.find(record, '\n', 1, true) then
    record = joined_record(KEYS[4], KEYS[6], id, record)
  end
  -- An id without a record cannot run; dropping it is the only safe move.
  if record then
    members[#members + 1] = token
    members[#members + 1] = id
    if lease then
      leases[#leases + 1] = now + lease
      leases[#leases + 1] = id
    end
    result[#result + 1] = id
    result[#result + 1] = record
    result[#result + 1] = s or false
  end
end
chunked('HSET', KEYS[5], written)
chunked('ZADD', KEYS[3], members)
if lease and #leases > 0 then
  -- A runtime never times out on heartbeats here (+inf): the custodian asks its presence instead.
  redis.call('ZADD', KEYS[1], '+inf', ARGV[1])
  chunked('ZADD', KEYS[8], leases)
  redis.call('ZADD', KEYS[9], 'LT', now + lease, ARGV[1])
end
return result
