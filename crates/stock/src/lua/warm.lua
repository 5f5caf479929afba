-- Make a sale live in Redis from its PostgreSQL record, only if its state is absent, so warming is idempotent
-- and never resets a live counter.
--
-- KEYS[1] sale hash  KEYS[2] stock   ARGV[1] remaining units, ARGV[2..] field, value pairs of the sale hash
-- Replies 1 when it warmed, 0 when the sale was already live.
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SET', KEYS[2], ARGV[1])
return 1
