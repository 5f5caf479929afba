-- Mark a reservation paid after PostgreSQL committed `pending_payment -> paid`: its units now count as sold
-- and the buyer keeps their entry (a paid order is active). Idempotent: only a 'held' reservation changes, so
-- a replayed webhook or a sweeper repair never counts a sale twice. A missing record (Redis lost the state;
-- the warmer rebuilds it from PostgreSQL, paid orders included) changes nothing.
--
-- KEYS[1] reservation hash  KEYS[2] sale hash  KEYS[3] deadlines zset  KEYS[4] outbox zset
-- ARGV[1] order id  ARGV[2] counters channel  ARGV[3] sale id (announced there: `sold` changed)
-- Replies 'PAID' | 'ALREADY_PAID' | 'MISSING' | 'NOT_HELD' (expired or rejected: PostgreSQL decides; a caller
-- seeing this after a committed payment has found a bug, never a normal race)
local r = redis.call('HMGET', KEYS[1], 'state', 'qty')
if not r[1] then return 'MISSING' end
if r[1] == 'paid' then return 'ALREADY_PAID' end
if r[1] ~= 'held' then return 'NOT_HELD' end
redis.call('HSET', KEYS[1], 'state', 'paid')
redis.call('HINCRBY', KEYS[2], 'sold', r[2])
redis.call('HINCRBY', KEYS[2], 'v', 1)
redis.call('PUBLISH', ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
-- Paid proves the order row exists; any outbox entry left for it has done its job.
redis.call('ZREM', KEYS[4], ARGV[1])
return 'PAID'
