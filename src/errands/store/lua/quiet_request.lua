-- quiet_request: record a remote request to a running pool to go quiet or resume
-- (Client.quiet_pool / resume_pool, admin/pools.py). The pool reads its field at each heartbeat
-- (heartbeat.lua) and acts on a value it has not seen; deregister.lua and reap.lua remove the
-- field when the pool leaves the registry (so a field only ever names a registered pool).
-- KEYS[1] pools   KEYS[2] quiet requests (HASH pool id -> "quiet:<ms>" | "resume:<ms>")
-- KEYS[3] the pool's info (STRING, JSON: "quiet_since" in it while the pool is quiet)
-- ARGV[1] pool id   ARGV[2] 'quiet' | 'resume'
-- Returns -1 when the pool is not registered (nothing written), 1 when a request was recorded,
-- 0 when there was nothing to change: quiet of a pool quiet (or asked to be) and not asked to
-- resume; resume of a pool that is neither quiet nor asked to be. A re-sent call (redis-py, after
-- a lost reply) finds its request recorded and answers 0 (a resume of a pool still quiet records
-- it again, with a new time: harmless, the pool resumes once). A key of another type is refused
-- by name before the first write. The answers -1 and 0, read and not written, write nothing first
-- (lib/types.lua unwritten): a master demoted by a failover refuses them (READONLY), where the
-- new master may hold the pool registered, or not quiet.
--@include types
local wrong = wrong_type(function(j) return ({'ZCARD', 'HLEN', false})[j] end, 'nothing recorded')
if wrong then
  return wrong
end
if ARGV[2] ~= 'quiet' and ARGV[2] ~= 'resume' then
  return redis.error_reply('errands: quiet_request: bad request ' .. tostring(ARGV[2]))
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return unwritten('HDEL', KEYS[2], -1)
end
local pending = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local info = redis.pcall('GET', KEYS[3])
local quiet = type(info) == 'string' and string.find(info, '"quiet_since":', 1, true) ~= nil
local asked_quiet = string.sub(pending, 1, 6) == 'quiet:'
local asked_resume = string.sub(pending, 1, 7) == 'resume:'
if ARGV[2] == 'quiet' then
  if asked_quiet or (quiet and not asked_resume) then
    return unwritten('HDEL', KEYS[2], 0)
  end
elseif not (quiet or asked_quiet) then
  return unwritten('HDEL', KEYS[2], 0)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. now)
return 1
