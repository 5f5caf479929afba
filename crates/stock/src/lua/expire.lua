-- Release a reservation after PostgreSQL committed `pending_payment -> expired`: its units go back to the
-- stock (the sale leaves sold_out), the buyer's entry is cleared so they may reserve again, and it leaves the
-- deadlines and the outbox. Idempotent: only a 'held' reservation changes, so a redelivered due message, the
-- sweeper and a restarted expiry service return the units exactly once. A missing record (Redis lost the
-- state; the warmer rebuilt the stock from PostgreSQL, where this order no longer counts) changes nothing.
--
-- KEYS[1] reservation hash  KEYS[2] stock  KEYS[3] buyers hash  KEYS[4] deadlines zset  KEYS[5] outbox zset
-- KEYS[6] sale hash (its counters version `v` goes up when units come back)
-- ARGV[1] order id  ARGV[2] restock channel  ARGV[3] sale id (announced there when units come back)
-- Replies 'RELEASED' | 'ALREADY_RELEASED' | 'MISSING' | 'NOT_HELD' (paid or rejected: nothing to give back)
local r = redis.call('HMGET', KEYS[1], 'state', 'qty', 'user')
if not r[1] then return 'MISSING' end
if r[1] == 'expired' then return 'ALREADY_RELEASED' end
if r[1] ~= 'held' then return 'NOT_HELD' end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('INCRBY', KEYS[2], r[2])
  if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('HINCRBY', KEYS[6], 'v', 1) end
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
if redis.call('HGET', KEYS[3], r[3]) == ARGV[1] then redis.call('HDEL', KEYS[3], r[3]) end
redis.call('HSET', KEYS[1], 'state', 'expired')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 'RELEASED'
