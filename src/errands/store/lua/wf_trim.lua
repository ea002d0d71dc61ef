-- wf_trim: runs whose linger is over leave the indexes of runs (the listing trims them before
-- it reads; every store and end of a run trims a few too, see lib/workflows.lua).
-- KEYS[1] workflows (ZSET run -> stored at)   KEYS[2] workflows_expiry (ZSET run -> linger over)
-- ARGV[1] now ms
-- Returns how many runs left the indexes (at most 1,000 per call).
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
end
return #gone
