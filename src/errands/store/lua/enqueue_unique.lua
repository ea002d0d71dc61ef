-- enqueue_unique: store a job unless another job holds the same unique digest. Idempotent on the
-- job id as enqueue.lua: a re-sent call finds its own job and reports it stored.
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] seq   KEYS[4] names
-- KEYS[5] idle pools of the job name (lib/wake.lua: a queued job wakes one of them)
-- KEYS[6] queue of the job name   KEYS[7] scheduled set of the job name
-- KEYS[8] unique (HASH digest -> job id)   KEYS[9] unique_of_job (HASH id -> digest)
-- KEYS[10] unique_expiry (ZSET digest -> lock expiry ms)   KEYS[11] listening
-- KEYS[12] ended (tombstones)   KEYS[13] the job's result-record key
-- KEYS[14] partitions   KEYS[15] partition queue of the job name   KEYS[16] its partitions
-- ready (see lib/limits.lua)   KEYS[17] workflows (ZSET, the index of runs)   KEYS[18]
-- workflow_of (read through lib/wfids.lua: a job whose id is a stored run's member's or
-- callback's is refused as one taken)
-- ARGV[1] wake channel  ARGV[2] name  ARGV[3] id  ARGV[4] envelope  ARGV[5] priority
-- ARGV[6] due ms (0 = now)  ARGV[7] digest  ARGV[8] lock expiry ms  ARGV[9] now ms
-- ARGV[10] events channel   ARGV[11] partition ('' = none)
-- Returns {1, id, 0} when stored; {1, id, 0} too when this very job (same id and envelope) is
-- already stored (a re-sent call); {1, id, 1} when the id is taken by another job, ended
-- recently or is a workflow member's or callback's while its run is stored (nothing stored); {0, holder id, 0} when a live job already holds the digest.
-- Those answers found, not stored, write nothing but a no-op (HDEL of jobs' field '', not
-- replicated) first, so that a replica (a master demoted by a failover, still answering from
-- its old data) refuses the call (READONLY) instead of giving them for a job or a digest the
-- new master may not hold; a call that stores its job pays nothing for it.
-- A key of another type, a bad argument (priority, due time, lock expiry) or a seq that is not
-- a counter fails the call before its first write (as enqueue.lua): an envelope stored without
-- its queue entry would hold the unique lock, and no job would run. The lock expiry goes to ZADD
-- verbatim, so it must be spelt as Redis reads an integer (is_int, 0..MAX_MS): ' 5' passed
-- tonumber() and raised in that ZADD after the envelope was stored.
--@include events
--@include prio
--@include limits
--@include wake
--@include types
local TYPES = {'HLEN', 'HLEN', 'GET', 'SCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', 'ZCARD',
  false, 'ZCARD', false, 'HLEN', 'ZCARD', 'ZCARD'}
local wrong = wrong_type(function(j) return TYPES[j] end, 'no job was stored')
if wrong then
  return wrong
end
local prio, due = tonumber(ARGV[5]), tonumber(ARGV[6])
if not is_priority(prio) then
  return redis.error_reply('errands: enqueue_unique: priority must be an integer in -1000..1000, got '
    .. ARGV[5])
end
if not is_whole(due) or not is_int(ARGV[8], 0, MAX_MS) then
  return redis.error_reply('errands: enqueue_unique: due time and lock expiry must be whole ms, got '
    .. ARGV[6] .. ', ' .. ARGV[8])
end
if due <= 0 then
  local bad = not_counter(KEYS[3], 'no job was stored')
  if bad then
    return bad
  end
end
local id = ARGV[3]
local stored = redis.call('HGET', KEYS[1], id)
if stored then
  if stored == ARGV[4] then
    return unwritten('HDEL', KEYS[1], {1, id, 0})
  end
  return unwritten('HDEL', KEYS[1], {1, id, 1})
end
if redis.call('ZSCORE', KEYS[12], id) or redis.call('EXISTS', KEYS[13]) == 1 then
  return unwritten('HDEL', KEYS[1], {1, id, 1})
end
-- an id a workflow member's or callback's may be (lib/wfids.lua: taken while its run is stored;
-- included in this block, its functions built only for an id holding '.' or '!')
if string.find(id, '.', 1, true) or string.find(id, '!', 1, true) then
--@include wfids
  local member = wf_ids_taken(KEYS[17], KEYS[18], {id}, 'no job was stored')
  if member.err then
    return member
  elseif member[1] then
    return unwritten('HDEL', KEYS[1], {1, id, 1})
  end
end
local holder = redis.call('HGET', KEYS[8], ARGV[7])
if holder then
  local expiry = tonumber(redis.call('ZSCORE', KEYS[10], ARGV[7]) or '0')
  if expiry > tonumber(ARGV[9]) and redis.call('HEXISTS', KEYS[1], holder) == 1 then
    return unwritten('HDEL', KEYS[1], {0, holder, 0})
  end
  redis.call('HDEL', KEYS[9], holder)
end
redis.call('HSET', KEYS[1], id, ARGV[4])
if prio ~= 0 then
  redis.call('HSET', KEYS[2], id, prio)
end
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[8], ARGV[7], id)
redis.call('HSET', KEYS[9], id, ARGV[7])
redis.call('ZADD', KEYS[10], ARGV[8], ARGV[7])
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[14], id, ARGV[11])
end
if due > 0 then
  redis.call('ZADD', KEYS[7], due, id)
else
  local seq = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[6], queue_score(seq, prio), id)
  if ARGV[11] ~= '' then
    local P = {part = KEYS[14], seq = KEYS[3], pq = KEYS[15], pready = KEYS[16]}
    lim_queued(P, id, queue_score(seq, prio), ARGV[11])
  end
  wake_one(KEYS[5], ARGV[1] .. ':', false)
end
if redis.call('EXISTS', KEYS[11]) == 1 then
  ev_publish(KEYS[11], ARGV[10], id, '{"event":"enqueued","id":"' .. id .. '","name":"' .. ARGV[2] .. '"}')
end
return {1, id, 0}
