-- Prepended to every queue script by LuaScripts.Load: local helpers only, no globals, no writes.

-- Redis time in ms: the one clock every process compares.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Runs command(key, values...) in chunks: unpack() fails at about 8,000 values, and a script that
-- fails after it has written leaves those writes in place. Chunks hold 1,000 values, so pairs (field value,
-- score member) are never split.
local function chunked(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- What command(key, values...) answers for each of values[first..last] (default: all), in order, one call per
-- 1,000 values: a batch reads with one HMGET or ZMSCORE, not one call per job (each call costs about a
-- microsecond on top of its work). A missing member reads as false.
local function gathered(command, key, values, first, last)
  first, last = first or 1, last or #values
  local out = {}
  for i = first, last, 1000 do
    local got = redis.call(command, key, unpack(values, i, math.min(i + 999, last)))
    for k = 1, #got do
      out[#out + 1] = got[k]
    end
  end
  return out
end

-- The claims named in ARGV from index first on, in groups of size values that each start (job id, claim token):
-- returns their ids, and per group whether the inflight set still holds that claim (an id named twice counts once).
local function held_claims(inflight, first, size)
  local ids, tokens = {}, {}
  for i = first, #ARGV, size do
    ids[#ids + 1] = ARGV[i]
    tokens[#tokens + 1] = tonumber(ARGV[i + 1])
  end
  local scores = gathered('ZMSCORE', inflight, ids)
  local held, seen = {}, {}
  for n, id in ipairs(ids) do
    held[n] = not seen[id] and scores[n] and tonumber(scores[n]) == tokens[n] or false
    seen[id] = true
  end
  return ids, held
end

-- A job's state: "attempt|maxAttempts|dueAt|lastError" (lastError is the rest, possibly empty).
local function parse_state(s)
  local attempt, max, due, err = string.match(s, '^(%d+)|(%d+)|(%d+)|(.*)$')
  return tonumber(attempt) or 0, tonumber(max) or 1, tonumber(due) or 0, err or ''
end

local function format_state(attempt, max, due, err)
  return attempt .. '|' .. max .. '|' .. due .. '|' .. err
end

-- A job is a record in conveyor:{q}:jobs, "<header JSON>\n<payload>" (written once at enqueue; the header JSON holds
-- no raw newline), and a state in conveyor:{q}:state, "attempt|maxAttempts|dueAt|lastError", the only part transitions
-- rewrite. Enqueue writes no state: until a transition writes one, a job is on its first attempt and its state is read
-- from the header (first_state), so a job that succeeds first time costs Redis one hash entry, not two. A transition
-- never decodes or re-encodes payload bytes, and reads a record only while it is at most SMALL_RECORD bytes (header
-- included): a claim writes the state of a larger record, so that a recovery finds it. Three older layouts may still
-- be stored: the first (a JSON record holding everything, the payload as an escaped string, no state: no raw newline
-- either), the second (header JSON without the newline, the payload raw in conveyor:{q}:payloads, always a state) and
-- the third (the current record, its state written at enqueue).
local SMALL_RECORD = 1024

-- The state of a job with no transition yet, from its header JSON (as enqueue.lua writes it: maxAttempts before
-- enqueuedAt, dueAt last and only for a job enqueued with a due time): first attempt, due when enqueued unless it says
-- dueAt. Matched, not decoded. A JSON string in the header cannot hold the quoted names (its quotes are escaped), and
-- the header is cut from the record first, so the payload is never scanned.
local function first_state(header)
  return '0|' .. (string.match(header, '"maxAttempts":(%d+)') or '1') .. '|'
    .. (string.match(header, '"dueAt":(%d+)}$') or string.match(header, '"enqueuedAt":(%d+)') or '0') .. '|'
end

-- The state of job id (KEYS of the caller: jobs and state hashes), or nil when there is no such job. A job with no
-- transition yet has its state read from the header (not written: the caller writes what it changes). A job of the
-- first layout is rewritten here, once, as record and state; no later transition decodes it again (an unreadable one
-- keeps its record as it is, and gets a state that says so).
local function job_state(jobs, state, id)
  local s = redis.call('HGET', state, id)
  if s then
    return s
  end
  local record = redis.call('HGET', jobs, id)
  if not record then
    return nil
  end
  local newline = string.find(record, '\n', 1, true)
  if newline then
    -- No transition yet: its state is in its header (give_back reads such records itself, a batch at a time).
    return first_state(string.sub(record, 1, newline - 1))
  end
  local ok, job = pcall(cjson.decode, record)
  if not ok or type(job) ~= 'table' then
    s = format_state(0, 1, 0, 'the job record is unreadable')
    redis.call('HSET', state, id, s)
    return s
  end
  local header = {
    type = type(job.type) == 'string' and job.type or '',
    maxAttempts = tonumber(job.maxAttempts) or 1,
    enqueuedAt = tonumber(job.enqueuedAt) or 0,
  }
  if type(job.traceParent) == 'string' then
    header.traceParent = job.traceParent
  end
  s = format_state(tonumber(job.attempt) or 0, header.maxAttempts, tonumber(job.dueAt) or 0,
    type(job.lastError) == 'string' and job.lastError or '')
  redis.call('HSET', jobs, id, cjson.encode(header) .. '\n' .. (type(job.payload) == 'string' and job.payload or 'null'))
  redis.call('HSET', state, id, s)
  return s
end

-- The record of job id, stored by the second layout as header (no newline) and payload apart: joined once into the
-- current layout's record, its payload entry deleted.
local function joined_record(jobs, payloads, id, header)
  local record = header .. '\n' .. (redis.call('HGET', payloads, id) or 'null')
  redis.call('HSET', jobs, id, record)
  redis.call('HDEL', payloads, id)
  return record
end


-- Gives claimed jobs back counting the attempt (a consumer that died, a runtime gone offline, a claim that expired):
-- each goes to the end of the ready list with err as its lastError, or to the dead set when that was its last
-- attempt. KEYS of the caller: jobs, state, ready and dead; the caller removes the claims.
-- Returns: how many were requeued, how many died.
local function give_back(jobs, state, ready, dead, channel, ids, err, now)
  local states = gathered('HMGET', state, ids)
  -- Jobs with no transition yet (small records, claim.lua) have their state read from their headers, one read for all.
  local missing, at = {}, {}
  for n, id in ipairs(ids) do
    if not states[n] then
      missing[#missing + 1] = id
      at[#at + 1] = n
    end
  end
  local records = gathered('HMGET', jobs, missing)
  for i, id in ipairs(missing) do
    local record = records[i]
    local newline = record and string.find(record, '\n', 1, true)
    if newline then
      states[at[i]] = first_state(string.sub(record, 1, newline - 1))
    elseif record then
      states[at[i]] = job_state(jobs, state, id)
    end
  end
  local updates, requeued, died = {}, {}, {}
  for n, id in ipairs(ids) do
    local s = states[n]
    if s then
      local attempt, max = parse_state(s)
      attempt = attempt + 1
      updates[#updates + 1] = id
      updates[#updates + 1] = format_state(attempt, max, now, err)
      if attempt >= max then
        died[#died + 1] = now
        died[#died + 1] = id
      else
        requeued[#requeued + 1] = id
      end
    end
  end
  chunked('HSET', state, updates)
  chunked('ZADD', dead, died)
  if #requeued > 0 then
    chunked('RPUSH', ready, requeued)
    redis.call('PUBLISH', channel, #requeued)
  end
  return #requeued, #died / 2
end

-- History counters, for the dashboard's chart: conveyor:{q}:history holds fields "<minute>:<kind>" -> jobs, minute =
-- floor(Redis time ms / 60000), kind e (enqueued), p (processed: acked) or f (failed: an attempt that ended in an error,
-- whether its handler failed or its consumer died or lost its lease). Scripts take the key as their LAST KEYS entry
-- (table.remove(KEYS) first, so optional keys keep their numbers) and call count once per call, never per job.
-- The first write of a field (at most three a minute) drops fields older than HISTORY_MINUTES minutes, reading at most
-- 3 * HISTORY_MINUTES + 3 field names, and pushes the key's expiry out: a queue idle that long loses its history key.
local HISTORY_MINUTES = 62

local function count(history, kind, n, now)
  if n <= 0 then
    return
  end
  now = now or now_ms()
  local minute = math.floor(now / 60000)
  if redis.call('HINCRBY', history, minute .. ':' .. kind, n) ~= n then
    return
  end
  redis.call('PEXPIRE', history, HISTORY_MINUTES * 60000)
  local old = {}
  for _, field in ipairs(redis.call('HKEYS', history)) do
    if (tonumber(string.match(field, '^(%d+):')) or 0) <= minute - HISTORY_MINUTES then
      old[#old + 1] = field
    end
  end
  chunked('HDEL', history, old)
end
