-- The feature-enricher's per-user online features, computed and updated in
-- one atomic call per transaction (EVALSHA). The definitions match
-- scripts/fraud/fraud_data.py, the reference the tests compare with.
--
-- KEYS (one user's, all under the hash tag {user}, so Redis Cluster keeps
-- them on one shard):
--   1 u:{user}:tx         ZSET transaction id -> time (ms), the last 24 h
--   2 u:{user}:stats      HASH n, mean, m2 (Welford), last (ms)
--   3 u:{user}:merchants  ZSET merchant -> last time (ms), the last 24 h
--   4 u:{user}:countries  SET
--   5 u:{user}:devices    SET
--   6 u:{user}:f:{id}     STRING the features this call returned, so that a
--                         replayed transaction gets the same ones and never
--                         counts twice
-- ARGV: id, timestamp (ms), amount, merchant, country, device, ttl (s)
-- Returns "tx_1h tx_24h amount_z merchants_24h secs_since_last new_country
-- new_device prior_tx", numbers with 17 significant digits.
--
-- Bounded per user, whatever a client sends: the two ZSETs keep their
-- newest 10,000 members (so tx_24h and merchants_24h count at most that
-- many), the two SETs take at most 1,000 members (a country or device past
-- that is never added, so it counts as new every time: the cautious side).

local cached = redis.call('GET', KEYS[6])
if cached then
  return cached
end
local id, ts, amount = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local merchant, country, device, ttl = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local hour, day, max_gap = 3600000, 86400000, 604800
local max_recent, max_seen = 10000, 1000

local tx_1h = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.17g', ts - hour),
                         string.format('%.17g', ts))
local tx_24h = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.17g', ts - day),
                          string.format('%.17g', ts))
local st = redis.call('HMGET', KEYS[2], 'n', 'mean', 'm2', 'last')
local n = tonumber(st[1]) or 0
local mean = tonumber(st[2]) or 0
local m2 = tonumber(st[3]) or 0
local last = tonumber(st[4])
local z = 0
if n >= 2 then
  local std = math.sqrt(m2 / (n - 1))
  if std > 0 then
    z = (amount - mean) / std
  end
end
local merchants = redis.call('ZCOUNT', KEYS[3], '(' .. string.format('%.17g', ts - day),
                             string.format('%.17g', ts))
local gap = max_gap
if last then
  gap = math.min(max_gap, math.max(0, (ts - last) / 1000))
end
local new_country, new_device = 0, 0
if n > 0 then
  if redis.call('SISMEMBER', KEYS[4], country) == 0 then new_country = 1 end
  if redis.call('SISMEMBER', KEYS[5], device) == 0 then new_device = 1 end
end
local prior = math.min(n, 1000)

-- update the user's state with this transaction
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', ts - day))
redis.call('ZADD', KEYS[1], string.format('%.17g', ts), id)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(max_recent + 1))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.17g', ts - day))
redis.call('ZADD', KEYS[3], string.format('%.17g', ts), merchant)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max_recent + 1))
if redis.call('SCARD', KEYS[4]) < max_seen then redis.call('SADD', KEYS[4], country) end
if redis.call('SCARD', KEYS[5]) < max_seen then redis.call('SADD', KEYS[5], device) end
n = n + 1
local delta = amount - mean
mean = mean + delta / n
m2 = m2 + delta * (amount - mean)
if last == nil or ts > last then
  last = ts
end
redis.call('HSET', KEYS[2], 'n', n, 'mean', string.format('%.17g', mean),
           'm2', string.format('%.17g', m2), 'last', string.format('%.17g', last))
for i = 1, 5 do
  redis.call('EXPIRE', KEYS[i], ttl)
end

local result = string.format('%d %d %.17g %d %.17g %d %d %d', tx_1h, tx_24h, z, merchants, gap,
                             new_country, new_device, prior)
redis.call('SET', KEYS[6], result, 'EX', ttl)
return result
