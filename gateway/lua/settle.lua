-- Sentinel settlement: replace a reservation by the actual cost and correct the TPM counters.
-- Idempotent per budget: the reservation field r:<id> is consumed, so a retried settle is a no-op.
--
-- KEYS[1..nt]         TPM keys (GCRA TAT, µs)
-- KEYS[nt+1..nt+nb]   budget hashes
-- KEYS[nt+nb+1]       reservation index
-- ARGV[1] now in µs ('' = Redis TIME)   ARGV[2] reservation id   ARGV[3] actual cost (micros)
-- ARGV[4] token correction (actual - estimated, may be negative)   ARGV[5] nt   ARGV[6] nb
-- ARGV[7..] per TPM key: limit per minute
-- Reply: number of budgets settled (a budget whose reservation is gone -- already settled, or the
-- key was lost with a Redis restart -- is left alone).

local PERIOD = 60000000
local nt = tonumber(ARGV[5])
local nb = tonumber(ARGV[6])
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rid = ARGV[2]
local delta = tonumber(ARGV[4])

local field = 'r:' .. rid
local index = KEYS[nt + nb + 1]
local settled = 0
for i = 1, nb do
  local key = KEYS[nt + i]
  local v = redis.call('HGET', key, field)
  if v then
    if v ~= 'e' and v ~= '0' then
      redis.call('HINCRBY', key, 'reserved', '-' .. v)
    end
    redis.call('HDEL', key, field)
    redis.call('HINCRBY', key, 'spent', ARGV[3])
    redis.call('ZREM', index, key .. '|' .. rid)
    settled = settled + 1
  end
end

-- The token correction applies once: only when this call consumed a reservation, or when no
-- budget applies at all (then a retried settle may correct twice; TPM errs on the strict side).
if delta ~= 0 and (settled > 0 or nb == 0) then
  for i = 1, nt do
    local interval = PERIOD / tonumber(ARGV[7 + (i - 1)])
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local new = math.ceil(tat + delta * interval)
    if new > now then
      redis.call('SET', KEYS[i], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return settled
