-- The single-flight leader's last step in one round trip: store the answer, then release the lock
-- if we still hold it (its TTL may have expired and another caller taken it).
-- KEYS[1] cache entry   KEYS[2] its lock   ARGV[1] answer   ARGV[2] TTL (s)   ARGV[3] our token
-- Reply: 1 released, 0 not ours (or gone)
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  return redis.call('DEL', KEYS[2])
end
return 0
