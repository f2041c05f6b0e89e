-- After a group of synchronous beats committed (each runtime's row is online with last_seen_at at least the
-- group's time): the runtimes are known online, so their next beats are recorded in Redis, and the time PostgreSQL
-- holds starts their write window. The seen hash is left alone: PostgreSQL holds this beat exactly.
-- KEYS[1]: conveyor:{presence}:online  hash  runtime id -> "<token hash>:<ms PostgreSQL holds at least>"
-- ARGV[1]: the group's beat time (ms, Redis time), written to PostgreSQL
-- ARGV[2..]: pairs of runtime id and token hash
-- Returns: runtimes recorded
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[1])
end
return (#ARGV - 1) / 2
