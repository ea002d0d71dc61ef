-- heartbeat: register a pool, or renew its lease, stamped with the Redis server's clock
-- (skew-proof). A pool that is no longer registered (a reaper took its lease and its jobs) is
-- not registered again: it must carry on under a new id, if at all.
-- KEYS[1] pools (ZSET id -> last beat ms)   KEYS[2] pool info (STRING)   KEYS[3] retired
-- KEYS[4] (optional) quiet requests (HASH pool id -> "quiet:<ms>" | "resume:<ms>", written by
-- admin/pools.py): given, its field for the pool is read (one HGET, before the first write) and
-- the reply is {time, request or false}; a hash of another type is refused by name, nothing
-- written
-- ARGV[1] pool id   ARGV[2] pool info JSON   ARGV[3] info TTL ms   ARGV[4] 'register' | 'renew'
-- Returns the Redis time in ms (with KEYS[4]: {time, request}), or -1 when the lease is lost
-- (renew of an unregistered pool, register of a retired id). A TTL that SET PX refuses (not an integer as Redis spells one, 0, or
-- past lib/types.lua's MAX_MS) is an error before the first write: it raised after the ZADD.
-- A registry (or, to register, a retired set) of another type is refused by name before the
-- first write (Redis' own WRONGTYPE, which names no key, came from the ZSCORE or the ZADD); the
-- info is SET whatever its type.
-- -1 is read, and written nothing first (lib/types.lua unwritten, on the set ZSCORE read), so
-- that a demoted master refuses it: a pool told so drops the acks it has not written and
-- cancels its jobs (worker/stopping.py abandon), which the new master may still hold for it
-- (registered there since, or its reaping not replicated): they ran again once its beats
-- stopped.
--@include types
if not is_int(ARGV[3], 1, MAX_MS) then
  return redis.error_reply('errands: heartbeat: bad info TTL ' .. tostring(ARGV[3])
    .. ': nothing written')
end
local register = ARGV[4] == 'register'
local wrong = wrong_type(function(j) return (j == 1 or (j == 3 and register)) and 'ZCARD' end,
  'no beat recorded')
if wrong then
  return wrong
end
local request = false
if KEYS[4] then  -- (its type checked by the read itself: redis.pcall)
  request = redis.pcall('HGET', KEYS[4], ARGV[1])
  if type(request) == 'table' and request.err then
    return wrong_key(KEYS[4], 'no beat recorded')
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if register then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
    return unwritten('ZREM', KEYS[3], -1)
  end
elseif not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return unwritten('ZREM', KEYS[1], -1)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if KEYS[4] then
  return {now, request}
end
return now
