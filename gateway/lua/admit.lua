-- Sentinel admission: rate limits (GCRA) + budget reservation, all or nothing, in one round trip.
--
-- KEYS[1..nr]           rate-limit keys; value = theoretical arrival time (TAT) in microseconds
-- KEYS[nr+1..nr+nb]     budget hashes: spent, reserved (micro-dollars), r:<reservation id> = amount,
--                       seeded_at (µs: when it was rebuilt from the ledger)
-- KEYS[nr+nb+1]         reservation index (zset "<budget key>|<reservation id>" -> deadline, µs)
-- ARGV[1] now in µs ('' = Redis server TIME)    ARGV[2] reservation id    ARGV[3] reserve (micros)
-- ARGV[4] reservation lifetime (µs)              ARGV[5] nr                ARGV[6] nb
-- ARGV[7..]  per rate limit: limit per minute, cost (1 request, or estimated tokens)
--            then per budget: limit (micros), key TTL (s), seed ('' = none: report the key missing)
--
-- Replies: {0, remaining_1, reset_us_1, ..., spent+reserved_1, ...}  admitted (budgets after it)
--          {1, index, retry_us, remaining_1, reset_us_1, ...}  rate limit `index` denies
--          {2, index, spent, reserved}                         budget `index` denies
--          {3, {index, ...}}                                   budgets to seed from the ledger first
--          {4}                                                 reservation id already in use
-- Nothing is written unless the reply is 0 (seeding a missing budget excepted).

local PERIOD = 60000000
local nr = tonumber(ARGV[5])
local nb = tonumber(ARGV[6])
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rid = ARGV[2]
local boff = 7 + 2 * nr

local missing = {}
for i = 1, nb do
  local key = KEYS[nr + i]
  if redis.call('EXISTS', key) == 0 then
    local seed = ARGV[boff + 3 * (i - 1) + 2]
    if seed == '' then
      missing[#missing + 1] = i
    else
      redis.call('HSET', key, 'spent', seed, 'reserved', '0', 'seeded_at', string.format('%d', now))
    end
  end
end
if #missing > 0 then
  return {3, missing}
end

local old = {}
local new = {}
local deny, deny_wait = 0, 0
for i = 1, nr do
  local limit = tonumber(ARGV[7 + 2 * (i - 1)])
  local cost = tonumber(ARGV[8 + 2 * (i - 1)])
  local interval = PERIOD / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  old[i] = tat
  new[i] = tat + cost * interval
  local wait = new[i] - PERIOD - now
  if wait > deny_wait then
    deny, deny_wait = i, wait
  end
end
if deny > 0 then
  local out = {1, deny, math.ceil(deny_wait)}
  for i = 1, nr do
    local interval = PERIOD / tonumber(ARGV[7 + 2 * (i - 1)])
    out[#out + 1] = math.floor((PERIOD - (old[i] - now)) / interval)
    out[#out + 1] = math.ceil(old[i] - now)
  end
  return out
end

local field = 'r:' .. rid
local reserve = tonumber(ARGV[3])
for i = 1, nb do
  local key = KEYS[nr + i]
  if redis.call('HEXISTS', key, field) == 1 then
    return {4}
  end
  local limit = tonumber(ARGV[boff + 3 * (i - 1)])
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  local spent = tonumber(v[1] or '0')
  local reserved = tonumber(v[2] or '0')
  if spent + reserved + reserve > limit then
    return {2, i, spent, reserved}
  end
end

local out = {0}
for i = 1, nr do
  local tat = math.ceil(new[i])
  redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  local interval = PERIOD / tonumber(ARGV[7 + 2 * (i - 1)])
  out[#out + 1] = math.floor((PERIOD - (new[i] - now)) / interval)
  out[#out + 1] = math.ceil(new[i] - now)
end
local index = KEYS[nr + nb + 1]
local deadline = now + tonumber(ARGV[4])
for i = 1, nb do
  local key = KEYS[nr + i]
  if reserve > 0 then
    redis.call('HINCRBY', key, 'reserved', ARGV[3])
  end
  redis.call('HSET', key, field, ARGV[3])
  redis.call('ZADD', index, deadline, key .. '|' .. rid)
  redis.call('EXPIRE', key, ARGV[boff + 3 * (i - 1) + 1])
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  out[#out + 1] = tonumber(v[1]) + tonumber(v[2])
end
return out
