-- request_cancel: ask the pool running a job to cancel it (`cancel`) or to drop it with every
-- trace (`destroy`). The request is stored only while an attempt of the job runs, so none is
-- left behind by a job that ended meanwhile; settle and reap delete it with the attempt.
-- KEYS[1] attempts   KEYS[2] cancel requests
-- ARGV[1] job id   ARGV[2] cancel | destroy   ARGV[3] control channel
-- Returns 1 when requested, 0 when no attempt of the job runs: read, and nothing written first
-- (lib/types.lua unwritten), so that a demoted master refuses it, where the new master may run
-- an attempt of the job (one started since, or whose end was not replicated). A key of another
-- type is refused by name before anything is written (Redis' own WRONGTYPE, which names no key,
-- came from the HEXISTS or the HSET).
-- A re-sent call (redis-py, after a lost reply) stores the same request again and answers 1, or
-- 0 once the attempt settled since (the request went with it). No caller in errands yet.
--@include types
local wrong = wrong_type(function() return 'HLEN' end, 'nothing requested', 2)
if wrong then
  return wrong
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return unwritten('HDEL', KEYS[1], 0)
end
local kind = ARGV[2]
if redis.call('HGET', KEYS[2], ARGV[1]) == 'destroy' then
  kind = 'destroy'  -- a destroy asked before stands: a cancel never downgrades it (cancel.lua)
end
redis.call('HSET', KEYS[2], ARGV[1], kind)
redis.call('PUBLISH', ARGV[3], kind .. ':' .. ARGV[1])
return 1
