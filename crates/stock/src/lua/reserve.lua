-- Reserve units of one sale for one buyer, atomically, in one round trip.
-- Order of checks (the API contract): sale state present, idempotency record, buyer rate limit, sale window,
-- quantity within the per-user limit, buyer's active order, stock. (The per-address limit is the gateway's,
-- in process, before this script runs.)
-- Every key it creates ends: the reservation, buyers and outbox expire with the sale (the sale hash's expire_ms),
-- the idempotency record after ARGV[4] seconds, the rate bucket once it has refilled.
--
-- KEYS[1] sale hash        KEYS[2] stock (remaining units)   KEYS[3] buyers hash (user -> order id)
-- KEYS[4] outbox zset      KEYS[5] reservation hash (new)    KEYS[6] buyer rate bucket
-- KEYS[7] idempotency key, or KEYS[1] again when there is none (every key in one slot, as a cluster requires)
-- KEYS[8] deadlines zset (held reservations by deadline)
-- KEYS[9] received-transfers set of a stock shard, or KEYS[1] when no transfer comes with the call
-- ARGV[1] order id  ARGV[2] user id  ARGV[3] quantity  ARGV[4] idempotency ttl (s)
-- ARGV[5] buyer rate/s  ARGV[6] buyer burst  ARGV[7] counters channel  ARGV[8] sale id
-- ARGV[9] announce at most every this many ms (the gateways' live feed re-reads once more after that long, so a
-- change whose announcement was skipped is still seen)
-- ARGV[10] transfer id, or '' (units another shard lent this one for this buyer, see lend.lua; taken in once)
-- ARGV[11] the transfer's units
--
-- Replies: {'RESERVED'|'REPLAYED', order_id, qty, amount_minor, created_ms, expires_ms} or {CODE, detail?}.

local function int(n) return string.format('%.0f', n) end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'per_user_limit', 'payment_window_secs',
  'price_minor', 'expire_ms', 'announced_ms')
if not meta[1] then return {'NO_SALE'} end
local qty = tonumber(ARGV[3])
local lent = ARGV[10] ~= nil and ARGV[10] ~= ''

-- Lent units land before any check, whatever this buyer is answered: they belong to the shard now.
if lent and redis.call('EXISTS', KEYS[2]) == 1 and redis.call('SADD', KEYS[9], ARGV[10]) == 1 then
  redis.call('INCRBY', KEYS[2], ARGV[11])
  if meta[6] then redis.call('PEXPIREAT', KEYS[9], meta[6]) end
end

-- A retry with the same key answers the first 202 and costs nothing. The '|p' mark tells a gateway whose
-- publish failed that a 202 for this reservation was already given, so it must not release it.
if KEYS[7] ~= KEYS[1] then
  local prev = redis.call('GET', KEYS[7])
  if prev then
    local id, q, amount, created, expires = string.match(prev, '^([^|]+)|(%d+)|(%d+)|(%d+)|(%d+)')
    if tonumber(q) ~= qty then return {'IDEMPOTENCY_MISMATCH', id} end
    if string.sub(prev, -2) ~= '|p' then redis.call('SET', KEYS[7], prev .. '|p', 'KEEPTTL') end
    return {'REPLAYED', id, q, amount, created, expires}
  end
end

-- Token bucket; returns 0 when a token was taken, else the milliseconds until one is available.
local function take(key, rate, burst)
  local b = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then return math.ceil((1 - tokens) * 1000 / rate) end
  redis.call('HSET', key, 't', tostring(tokens - 1), 'ts', int(now))
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  return 0
end

-- A call that brings lent units continues a request that already paid its token.
if not lent then
  local wait = take(KEYS[6], tonumber(ARGV[5]), tonumber(ARGV[6]))
  if wait > 0 then return {'RATE_LIMITED', int(wait)} end
end

if now < tonumber(meta[1]) then return {'SALE_NOT_STARTED'} end
if now >= tonumber(meta[2]) then return {'SALE_ENDED'} end
if qty > tonumber(meta[3]) then return {'QUANTITY_ABOVE_LIMIT', meta[3]} end

local holder = redis.call('HGET', KEYS[3], ARGV[2])
if holder then return {'LIMIT_EXCEEDED', holder} end

local remaining = tonumber(redis.call('GET', KEYS[2]))
if not remaining then return {'NO_SALE'} end
if remaining < qty then return {'SOLD_OUT'} end

local amount = int(tonumber(meta[5]) * qty)
local expires = int(now + tonumber(meta[4]) * 1000)
local created = int(now)
redis.call('DECRBY', KEYS[2], qty)
-- The live feed: a new counters version, announced unless another reservation announced it just now.
redis.call('HINCRBY', KEYS[1], 'v', 1)
if (not meta[7]) or now - tonumber(meta[7]) >= tonumber(ARGV[9]) then
  redis.call('HSET', KEYS[1], 'announced_ms', created)
  redis.call('PUBLISH', ARGV[7], ARGV[8])
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[5], 'user', ARGV[2], 'qty', ARGV[3], 'amount', amount,
  'created_ms', created, 'expires_ms', expires, 'state', 'held')
-- The outbox entry stays until the broker confirms; its score is the time of the last publish attempt.
redis.call('ZADD', KEYS[4], created, ARGV[1])
redis.call('ZADD', KEYS[8], expires, ARGV[1])
-- The buyers hash and the outbox may have just been created (or emptied and re-created): give them the sale's end.
if meta[6] then
  redis.call('PEXPIREAT', KEYS[5], meta[6])
  redis.call('PEXPIREAT', KEYS[3], meta[6])
  redis.call('PEXPIREAT', KEYS[4], meta[6])
  redis.call('PEXPIREAT', KEYS[8], meta[6])
end
if KEYS[7] ~= KEYS[1] then
  redis.call('SET', KEYS[7], ARGV[1] .. '|' .. ARGV[3] .. '|' .. amount .. '|' .. created .. '|' .. expires,
    'EX', tonumber(ARGV[4]))
end
return {'RESERVED', ARGV[1], ARGV[3], amount, created, expires}
