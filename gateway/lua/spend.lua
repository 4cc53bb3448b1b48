-- Add spend recorded while Redis was unreachable (admitted by the PostgreSQL fallback) to the
-- budgets that existed before it: a budget rebuilt from the ledger after the spend happened
-- (seeded_at later) already counts it, and a missing one will be rebuilt from the ledger.
--
-- KEYS[1..n] budget hashes   ARGV[1] cost (micros)   ARGV[2] when it was spent (µs)
-- Reply: number of budgets updated.

local updated = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local seeded = redis.call('HGET', KEYS[i], 'seeded_at')
    if not seeded or tonumber(seeded) < tonumber(ARGV[2]) then
      redis.call('HINCRBY', KEYS[i], 'spent', ARGV[1])
      updated = updated + 1
    end
  end
end
return updated
