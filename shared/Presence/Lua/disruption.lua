-- Records a sweep's verdict and grants how many silent runtimes it may mark offline. A token bucket, shared by every
-- instance, refills at the mass-offline rate up to one sweep interval's worth; only a sweep in mass silence spends it.
-- KEYS[1]: conveyor:{presence}:disruption  hash  mode, since (ms the mode began), silent, online, held, at (ms of
--                                                this sweep), tokens, refilled (ms)
-- ARGV[1]: mode: none | intakeInterrupted | fleetSilent | massSilence
-- ARGV[2]: silent runtimes this sweep found
-- ARGV[3]: online runtimes (0 when not counted)
-- ARGV[4]: refill rate (runtimes per second)
-- ARGV[5]: bucket capacity (runtimes)
-- Returns: {runtimes granted, the previous mode ('' when none was recorded)}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode, silent, rate, capacity = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local before = redis.call('HMGET', KEYS[1], 'mode', 'since', 'tokens', 'refilled')
local previous, since = before[1] or '', tonumber(before[2])
local tokens, refilled = tonumber(before[3]) or capacity, tonumber(before[4]) or now
tokens = math.min(capacity, tokens + rate * math.max(0, now - refilled) / 1000)
local granted = 0
if mode == 'none' then
  granted = silent
elseif mode == 'massSilence' then
  granted = math.min(silent, math.floor(tokens))
  tokens = tokens - granted
end
if previous ~= mode or not since then
  since = now
end
redis.call('HSET', KEYS[1], 'mode', mode, 'since', since, 'silent', silent, 'online', ARGV[3],
  'held', silent - granted, 'at', now, 'tokens', tostring(tokens), 'refilled', now)
return {granted, previous}
