-- heartbeat: record that a pool is alive, stamped with the Redis server's clock (skew-proof).
-- KEYS[1] pools (ZSET id -> last beat ms)   KEYS[2] pool info (STRING)
-- ARGV[1] pool id   ARGV[2] pool info JSON   ARGV[3] info TTL ms
-- Returns the Redis time in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return now
