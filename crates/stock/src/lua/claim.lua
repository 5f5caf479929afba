-- Claim outbox entries older than ARGV[1] ms for re-publishing (the relay). Claiming moves their score to now,
-- so another gateway's relay leaves them alone for the next ARGV[1] ms and the original gateway can no longer
-- cancel them.
--
-- KEYS[1] outbox zset   ARGV[1] age ms   ARGV[2] most entries
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - tonumber(ARGV[1])),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now), id)
end
return ids
