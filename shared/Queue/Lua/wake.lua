-- Whether a queue's ready backlog needs more sessions than its live consumers give, rate-limited by one slot.
-- KEYS[1]: conveyor:{q}:ready      list  ready job ids
-- KEYS[2]: conveyor:{q}:consumers  zset  consumer id -> last heartbeat (ms, Redis time; 0 = taken for dead)
-- KEYS[3]: conveyor:{q}:wake       string, the slot: set (NX, PX ARGV[3]) by the call that posts wake-ups
-- KEYS[4]: conveyor:{q}:remote     string, present once a remote runtime asked the queue for jobs (claim.lua)
-- ARGV[1]: handlers per consumer (Conveyor:Processor:Concurrency)
-- ARGV[2]: consumer timeout, ms: a consumer whose last heartbeat is older is not counted as live
-- ARGV[3]: slot length, ms (Conveyor:Wake:Interval)
-- ARGV[4]: most messages one post carries
-- ARGV[5]: 1 when the app's processors leave the queue to runtimes once KEYS[4] exists (they serve every queue), else 0
-- Returns: how many wake-ups to post now: ceil((backlog - live x concurrency) / concurrency), at most ARGV[4];
--          0 when the live consumers absorb the backlog, or when another call holds this interval's slot, or when
--          runtimes serve the queue
local backlog = redis.call('LLEN', KEYS[1])
if backlog == 0 or (ARGV[5] == '1' and redis.call('EXISTS', KEYS[4]) == 1) then
  return 0
end
local now = now_ms()
local concurrency = tonumber(ARGV[1])
local live = redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[2]), '+inf')
local surplus = backlog - live * concurrency
if surplus <= 0 then
  return 0
end
if not redis.call('SET', KEYS[3], now, 'NX', 'PX', ARGV[3]) then
  return 0
end
return math.min(math.ceil(surplus / concurrency), tonumber(ARGV[4]))
