-- Release one expired reservation (its process died or never settled).
--
-- KEYS[1] reservation index   KEYS[2] budget hash
-- ARGV[1] index member ("<budget key>|<id>")   ARGV[2] reservation id
-- ARGV[3] now (µs)   ARGV[4] how long to keep the expired marker (µs), so a late settle still counts
-- Reply: {state, micros}: state 1 = released `micros`, 2 = expired marker dropped, 0 = nothing to do
-- (already settled, or not yet due).

local index, key = KEYS[1], KEYS[2]
local member = ARGV[1]
local field = 'r:' .. ARGV[2]
local now = tonumber(ARGV[3])
local score = redis.call('ZSCORE', index, member)
if not score or tonumber(score) > now then
  return {0, 0}
end
local v = redis.call('HGET', key, field)
if v and v ~= 'e' then
  if v ~= '0' then
    redis.call('HINCRBY', key, 'reserved', '-' .. v)
  end
  redis.call('HSET', key, field, 'e')
  redis.call('ZADD', index, now + tonumber(ARGV[4]), member)
  return {1, tonumber(v)}
end
if v then
  redis.call('HDEL', key, field)
end
redis.call('ZREM', index, member)
return {2, 0}
