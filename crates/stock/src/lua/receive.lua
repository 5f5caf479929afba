-- Take in units lent by another shard of the sale (see `lend.lua`), at most once per transfer. Run by the
-- repair pass for transfers a gateway lent but never applied (it died in between); `reserve.lua` does the same
-- inline for the buyer who asked.
--
-- KEYS[1] home sale hash  KEYS[2] home stock  KEYS[3] home received set (transfer ids taken in)
-- ARGV[1] transfer id  ARGV[2] units  ARGV[3] restock channel  ARGV[4] sale id
-- Replies 'RECEIVED' | 'ALREADY' | 'MISSING' (the home shard holds no state; the transfer waits for the warmer).

if redis.call('EXISTS', KEYS[2]) == 0 then return 'MISSING' end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 'ALREADY' end
redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
local expire = redis.call('HGET', KEYS[1], 'expire_ms')
if expire then redis.call('PEXPIREAT', KEYS[3], expire) end
-- Units came back on sale: gateways that remember the sale as sold out must sell again.
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'RECEIVED'
