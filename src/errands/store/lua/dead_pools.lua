-- dead_pools: the pools whose last heartbeat is older than the dead timeout (Redis clock).
-- KEYS[1] pools (ZSET id -> last beat ms)
-- ARGV[1] dead timeout ms
-- Returns the ids of the dead pools.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
