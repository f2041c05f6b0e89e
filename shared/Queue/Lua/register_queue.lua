-- Lists a queue in the registry every timer visits, within the registry's bound.
-- KEYS[1]: conveyor:queues  set  queue names (and "!drop:<q>" while the custodian drops q)
-- ARGV[1]: queue name
-- ARGV[2]: most queues the registry may hold
-- Returns: 1 = listed (now or already), 0 = the registry is full (nothing changed)
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
