-- dead_pools: the pools to reap: those whose last heartbeat is older than the dead timeout (by
-- the Redis clock), and the retired ones whose in-progress sets are not drained yet.
-- KEYS[1] pools (ZSET id -> last beat ms)   KEYS[2] retired (ZSET id -> ms)
-- ARGV[1] dead timeout ms   ARGV[2] most pools of each kind to return
-- Returns the ids of those pools.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local out = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])), 'LIMIT', 0, limit)
for _, pool in ipairs(redis.call('ZRANGE', KEYS[2], 0, limit - 1)) do
  out[#out + 1] = pool
end
return out
