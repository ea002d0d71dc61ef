-- dead_pools: the pools to reap: those whose last heartbeat is older than the dead timeout (by
-- the Redis clock), and the retired ones whose in-progress sets are not drained yet, due now
-- (those held by entries reap.lua left alone are due one dead timeout after the reap call that
-- ended the reaper's read of the set; one whose reap is refused keeps its score), the earliest
-- due first.
-- KEYS[1] pools (ZSET id -> last beat ms)   KEYS[2] retired (ZSET id -> ms it is due from)
-- ARGV[1] dead timeout ms   ARGV[2] most pools of each kind to return
-- Returns the ids of those pools. A registry of another type is refused by name (lib/types.lua:
-- `WRONGTYPE <key> holds another type`, which store/keyrepair.py reads for the repair; Redis' own
-- WRONGTYPE of the ZRANGEBYSCORE names no key). It reads only: nothing is written.
--@include types
local wrong = wrong_type(function() return 'ZCARD' end, 'no dead pool listed')
if wrong then
  return wrong
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local out = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])), 'LIMIT',
  0, limit)
for _, pool in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  out[#out + 1] = pool
end
return out
