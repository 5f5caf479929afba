-- Undo a reservation whose message the broker definitely did not take (unroutable, never sent), so the
-- 503 answer holds no stock. Refuses when a message for it may still exist or a 202 was already given for it.
--
-- KEYS[1] reservation hash  KEYS[2] stock  KEYS[3] buyers hash  KEYS[4] outbox zset  KEYS[5] idempotency key, or
-- KEYS[7] again when there is none (every key in one slot, as a cluster requires)
-- KEYS[6] deadlines zset  KEYS[7] sale hash (its counters version `v` goes up)
-- ARGV[1] order id  ARGV[2] restock channel  ARGV[3] sale id (announced there when units come back)
-- Replies: 'RELEASED' | 'NOT_HELD' | 'PROMISED' (a retry was answered 202) | 'CLAIMED' (the relay took it over)

local r = redis.call('HMGET', KEYS[1], 'state', 'qty', 'user', 'created_ms')
if r[1] ~= 'held' then return 'NOT_HELD' end
if KEYS[5] ~= KEYS[7] then
  local v = redis.call('GET', KEYS[5])
  if v and string.sub(v, -2) == '|p' then return 'PROMISED' end
end
local score = redis.call('ZSCORE', KEYS[4], ARGV[1])
if (not score) or tonumber(score) ~= tonumber(r[4]) then return 'CLAIMED' end

redis.call('INCRBY', KEYS[2], r[2])
-- Never create the hash: a lone `v` would read as state of an earlier database to warm.lua.
if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('HINCRBY', KEYS[7], 'v', 1) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
if redis.call('HGET', KEYS[3], r[3]) == ARGV[1] then redis.call('HDEL', KEYS[3], r[3]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[1])
if KEYS[5] ~= KEYS[7] then redis.call('DEL', KEYS[5]) end
return 'RELEASED'
