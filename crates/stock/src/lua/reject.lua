-- Clear a reservation that the database refused (written 'rejected': Redis had lost writes), so it blocks
-- nobody: the buyer's entry no longer names it, and, when the refusal says the units were never counted
-- elsewhere (the buyer already held another order), they return to the stock. A refusal for lack of stock
-- returns nothing: Redis had counted those units twice, and the unit this reservation took was that surplus.
-- Idempotent: only a reservation still 'held' is cleared.
--
-- KEYS[1] reservation hash  KEYS[2] stock  KEYS[3] buyers hash  KEYS[4] outbox zset  KEYS[5] deadlines zset
-- KEYS[6] sale hash (its counters version `v` goes up when units come back)
-- ARGV[1] order id  ARGV[2] '1' = return the units  ARGV[3] the buyer's active order id, or ''
-- ARGV[4] restock channel  ARGV[5] sale id (announced there when units come back)
-- Replies 'CLEARED' | 'NOT_HELD'
local r = redis.call('HMGET', KEYS[1], 'state', 'qty', 'user')
if r[1] ~= 'held' then return 'NOT_HELD' end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCRBY', KEYS[2], r[2])
  if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('HINCRBY', KEYS[6], 'v', 1) end
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
if redis.call('HGET', KEYS[3], r[3]) == ARGV[1] then
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[3], r[3], ARGV[3])
  else
    redis.call('HDEL', KEYS[3], r[3])
  end
end
redis.call('HSET', KEYS[1], 'state', 'rejected')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 'CLEARED'
