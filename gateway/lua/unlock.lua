-- Release a lock only if we still hold it (its TTL may have expired and another caller taken it).
-- KEYS[1] lock   ARGV[1] our token   Reply: 1 released, 0 not ours (or gone)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
