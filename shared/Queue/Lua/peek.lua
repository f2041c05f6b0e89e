-- Reads jobs for display: each one's header and state, and its payload only up to a size (a page of 25 jobs must not
-- carry 25 payloads back). Writes nothing.
-- KEYS[1]: conveyor:{q}:jobs      hash  id -> record "<header JSON>\n<payload>" (_lib.lua)
-- KEYS[2]: conveyor:{q}:state     hash  id -> "attempt|maxAttempts|dueAt|lastError"
-- KEYS[3]: conveyor:{q}:payloads  hash  id -> payload of a job stored by the second layout
-- ARGV[1]: largest payload to return (bytes; 0 = none)
-- ARGV[2..]: job ids
-- Returns: per id { header, state, payload bytes, payload }: header false when there is no such job; the state of a
--          job with no transition yet read from its header; for a job of the first layout (no state, no newline) the
--          header is its whole record and the payload bytes -1; payload false when it is larger than ARGV[1]
local max = tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local records = gathered('HMGET', KEYS[1], ids)
local states = gathered('HMGET', KEYS[2], ids)
local result = {}
for n, id in ipairs(ids) do
  local record, s = records[n], states[n]
  local header, bytes, payload = record, -1, false
  local newline = record and string.find(record, '\n', 1, true)
  if newline and not s then
    s = first_state(string.sub(record, 1, newline - 1))
  end
  if record and s then
    if newline then
      header = string.sub(record, 1, newline - 1)
      bytes = #record - newline
      if bytes <= max then
        payload = string.sub(record, newline + 1)
      end
    else
      bytes = redis.call('HSTRLEN', KEYS[3], id)
      if bytes <= max then
        payload = redis.call('HGET', KEYS[3], id) or false
      end
    end
  end
  result[#result + 1] = header or false
  result[#result + 1] = s or false
  result[#result + 1] = bytes
  result[#result + 1] = payload
end
return result
