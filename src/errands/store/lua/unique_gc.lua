-- unique_gc: release unique locks past their expiry (the 24 h safety net).
-- KEYS[1] unique (HASH digest -> id)   KEYS[2] unique_of_job (HASH id -> digest)
-- KEYS[3] unique_expiry (ZSET digest -> expiry ms)
-- ARGV[1] now ms   ARGV[2] most locks to release
-- Returns the number of locks this call released: a re-sent call (redis-py, after a lost reply)
-- answers 0 of the locks its first send released (or releases the next ones, past ARGV[2], as
-- the next call would); its caller, worker/requeuer.py collect_garbage, drops the count (nothing
-- it does depends on it). A key of another type is refused by name before the
-- first write (HDEL of unique_of_job raised after the locks before it were released).
--@include types
local wrong = wrong_type(function() return 'HLEN' end, 'no lock released', 2)
if wrong then
  return wrong
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, digest in ipairs(expired) do
  local holder = redis.call('HGET', KEYS[1], digest)
  if holder then
    redis.call('HDEL', KEYS[2], holder)
  end
  redis.call('HDEL', KEYS[1], digest)
  redis.call('ZREM', KEYS[3], digest)
end
return #expired
