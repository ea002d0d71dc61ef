-- trim_set: bound a set of ended jobs (dead or cancelled) by age and size, deleting the jobs.
-- KEYS[1] the set (ZSET id -> ms)   KEYS[2] jobs   KEYS[3] priorities   KEYS[4] errors
-- ARGV[1] drop entries older than this ms   ARGV[2] most entries to keep
-- Returns the number of jobs deleted.
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 10000)
local excess = redis.call('ZCARD', KEYS[1]) - #stale - tonumber(ARGV[2])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], #stale, #stale + math.min(excess, 10000) - 1)) do
    stale[#stale + 1] = old
  end
end
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
return #stale
