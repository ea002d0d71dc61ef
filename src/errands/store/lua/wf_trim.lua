-- wf_trim: runs whose linger is over leave the indexes of runs (the listing trims them before
-- it reads; every store and end of a run trims a few too, see lib/workflows.lua).
-- KEYS[1] workflows (ZSET run -> stored at)   KEYS[2] workflows_expiry (ZSET run -> linger over)
-- ARGV[1] now ms
-- Returns how many runs left the indexes (at most 1,000 per call) in this call: a re-sent call
-- (redis-py, after a lost reply) answers 0 of the runs its first send took out (or takes the
-- next 1,000, as the next call would); its caller, the listing (admin/workflows.py), drops the
-- count: it lists what is left either way. A workflows index of another
-- type is refused by name before the first write (its ZREM raised after the runs left
-- workflows_expiry: they stayed listed for good).
--@include types
local wrong = wrong_type(function() return 'ZCARD' end, 'no run trimmed', 1)
if wrong then
  return wrong
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
end
return #gone
