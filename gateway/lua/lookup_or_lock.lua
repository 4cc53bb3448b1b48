-- The response cache's first step in one round trip: the cached answer, or on a miss the
-- single-flight lock (SET NX PX), so a miss does not pay a second round trip to take it.
-- KEYS[1] cache entry   KEYS[2] its lock   ARGV[1] our token   ARGV[2] lock TTL (ms)
-- Reply: {1, answer}  hit
--        {2}          miss, the lock is ours: call upstream, then store and release
--        {0}          miss, another caller holds the lock: wait for it
local answer = redis.call('GET', KEYS[1])
if answer then
  return {1, answer}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
