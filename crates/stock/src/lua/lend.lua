-- Lend units of one stock shard (the donor) to a buyer's home shard that ran out, atomically on the donor.
-- A shard split of a sale keeps every reservation on its buyer's home shard (so the per-buyer limit lives in
-- one place); units move instead. The units leave the donor here and are recorded in its `lent` set until the
-- home shard has taken them (`reserve.lua` with the transfer, or `receive.lua` from the repair pass): nothing
-- is lost if the gateway dies in between.
--
-- KEYS[1] donor sale hash  KEYS[2] donor stock  KEYS[3] donor lent zset (member 'home|units|transfer id',
-- scored by the time it was lent)
-- ARGV[1] transfer id  ARGV[2] home shard index  ARGV[3] units the buyer needs
-- Lends half of what the donor has, at least what the buyer needs (all it has when that is less: the caller
-- gathers from the next donor), so a shard that ran dry stops asking for a while.
-- Replies {'LENT', units} | {'EMPTY'} | {'MISSING'} (the donor holds no state).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local remaining = tonumber(redis.call('GET', KEYS[2]))
if not remaining then return {'MISSING'} end
local want = tonumber(ARGV[3])
if remaining <= 0 then return {'EMPTY'} end
local units = math.min(remaining, math.max(want, math.floor(remaining / 2)))
redis.call('DECRBY', KEYS[2], units)
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('ZADD', KEYS[3], now, ARGV[2] .. '|' .. units .. '|' .. ARGV[1])
local expire = redis.call('HGET', KEYS[1], 'expire_ms')
if expire then redis.call('PEXPIREAT', KEYS[3], expire) end
return {'LENT', tostring(units)}
