-- Make a sale live in Redis from its PostgreSQL record. Idempotent, and it never overwrites live stock:
--   * state under this id from an earlier database (another incarnation) is replaced whole;
--   * a missing sale hash is written; existing stock is never touched;
--   * missing stock (Redis lost the sale) is restored only when ARGV[4] = '1', i.e. when the caller has made
--     sure no reservation of this sale can still be in flight; the active orders are restored with it (their
--     reservation records, buyer entries, deadlines and the sale's `sold`), so each can still be paid or
--     expired exactly once.
-- Every key of the sale expires at ARGV[3] (live_until + retention), so nothing outlives the sale for long.
--
-- KEYS[1] sale hash  KEYS[2] stock  KEYS[3] buyers hash  KEYS[4] outbox zset  KEYS[5] deadlines zset
-- ARGV[1] incarnation (PostgreSQL created_at, µs)  ARGV[2] remaining units  ARGV[3] expire-at (ms, Unix)
-- ARGV[4] '1' = missing stock may be restored  ARGV[5] n = number of sale hash arguments (field, value, ...)
-- ARGV[6] restock channel  ARGV[7] sale id (announced there when the stock is written: the live feed and the
-- sold-out memory of every gateway re-read the sale at once, instead of at their next periodic check)
-- ARGV[8 .. 7+n] sale hash field/value pairs   ARGV[8+n] units sold (paid)   ARGV[9+n] reservation key prefix
-- ARGV[10+n ..] active orders, 7 values each: order id, user, qty, amount, created_ms, expires_ms, 'held'|'paid'
-- The counters version `v` (what the live feed's event ids carry) starts at Redis TIME in ms × 1000 whenever the
-- hash is written anew, so it stays above every version the lost or replaced state ever reached (that would take
-- over 1,000 changes per ms on average), and goes up by one when the stock is restored.
-- Replies 'WRITTEN' | 'LIVE' (already live; only missing fields and lifetimes restored) | 'REPLACED' | 'WAIT'.

local reply = 'WRITTEN'
local incarnation = redis.call('HGET', KEYS[1], 'incarnation')
if redis.call('EXISTS', KEYS[1]) == 1 and incarnation ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  reply = 'REPLACED'
end

local has_hash = redis.call('EXISTS', KEYS[1]) == 1
local has_stock = redis.call('EXISTS', KEYS[2]) == 1
if not has_stock and ARGV[4] ~= '1' then return 'WAIT' end

local n = tonumber(ARGV[5])
if not has_hash then
  for i = 8, 7 + n, 200 do
    redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 199, 7 + n)))
  end
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'v', string.format('%.0f', tonumber(t[1]) * 1000000 + math.floor(tonumber(t[2]) / 1000)))
end
if has_stock then
  reply = 'LIVE'
else
  redis.call('HSET', KEYS[1], 'sold', ARGV[8 + n])
  local prefix = ARGV[9 + n]
  for i = 10 + n, #ARGV, 7 do
    local id, user, state = ARGV[i], ARGV[i + 1], ARGV[i + 6]
    local res = prefix .. id
    redis.call('HSET', res, 'user', user, 'qty', ARGV[i + 2], 'amount', ARGV[i + 3],
      'created_ms', ARGV[i + 4], 'expires_ms', ARGV[i + 5], 'state', state)
    redis.call('PEXPIREAT', res, ARGV[3])
    redis.call('HSET', KEYS[3], user, id)
    if state == 'held' then redis.call('ZADD', KEYS[5], ARGV[i + 5], id) end
  end
  redis.call('SET', KEYS[2], ARGV[2])
  if has_hash then redis.call('HINCRBY', KEYS[1], 'v', 1) end
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end

for i = 1, 5 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[3])
end
return reply
