-- update_job: give a waiting (queued, scheduled, retrying) or dead job new args and/or a new
-- priority (Client.update_job), and record the edit in its history. A compare-and-set: only if
-- the job is still in `source` and its envelope is still the one read before (else 0: the
-- caller reads again). A queued job keeps its place among the jobs of its new priority (a job
-- of a partition is indexed anew there: its entry under the old score goes).
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] source set (queue, scheduled, retry or dead)
-- KEYS[4] history_data   KEYS[5] history of the job name
-- KEYS[6] partitions   KEYS[7] seq   KEYS[8] partition queue of the job name   KEYS[9] its
-- partitions ready (a queued job of a partition is indexed anew, see lib/limits.lua)
-- KEYS[10] unique (HASH digest -> job id)   KEYS[11] unique_of_job (HASH id -> digest)
-- KEYS[12] unique_expiry (ZSET digest -> lock expiry ms)
-- ARGV[1] job id   ARGV[2] envelope read before   ARGV[3] new envelope
-- ARGV[4] new priority ('' keeps it)   ARGV[5] '1' if the source is the job's queue
-- ARGV[6] history member ("<id>:e<n>")   ARGV[7] history record (JSON)   ARGV[8] now ms
-- ARGV[9] the unique digest of the old args, ARGV[10] of the new ones ('' and '': the lock, if
-- any, stays; Client.update_job sends them for a job whose lock is on its args, as
-- enqueue_unique computed it): a job still holding the old digest's lock has it moved to the new
-- digest, with its expiry, in this call. When a live lock of another job holds the new digest
-- (enqueue_unique would refuse that job's args), nothing is written: -1.
-- Returns 1 when updated, 0 when the job moved or changed meanwhile, -1 when the new args are
-- locked by another job (enqueue_unique). A re-sent call (its
-- envelope is stored already: this edit's, which counts its edits; or, the job having run on
-- since, ended or failed, its history record is this call's) answers 1 and writes nothing (it
-- answered 0 once the job had ended, and the Client, looking again, said the job could not be
-- edited). Those answers (1 re-sent, 0 and -1), read, write nothing first (lib/types.lua unwritten): a demoted
-- master refuses them, where the new master may lack the edit (not replicated) or hold the
-- job where the caller read it. A priority that is not a whole number in -1000..1000, a time that is not an integer
-- spelt as Redis reads one in 0..MAX_MS (is_int: it goes to ZADD verbatim, and ' 5' passed
-- tonumber() then raised there after the new envelope was stored), or a missing argument, is
-- an error before anything is written, and so is a key of another type or a seq that is not a
-- counter (a queued job of a partition gets a turn: INCR seq after the first write).
--@include prio
--@include limits
--@include types
local id = ARGV[1]
local prio = ARGV[4] ~= '' and tonumber(ARGV[4])
if #ARGV ~= 10 or not (prio == false or is_priority(prio)) or not is_int(ARGV[8], 0, MAX_MS) then
  return redis.error_reply('errands: update_job: bad priority or time, or not 10 arguments: '
    .. tostring(ARGV[4]) .. ', ' .. tostring(ARGV[8]) .. ', ' .. #ARGV)
end
local TYPES = {'HLEN', 'HLEN', 'ZCARD', 'HLEN', 'ZCARD', 'HLEN', false, 'ZCARD', 'ZCARD', 'HLEN',
  'HLEN', 'ZCARD'}
local wrong = wrong_type(function(j) return TYPES[j] end, 'nothing updated')
  or (KEYS[7] and not_counter(KEYS[7], 'nothing updated'))
if wrong then
  return wrong
end
if ARGV[3] ~= ARGV[2] and redis.call('HGET', KEYS[1], id) == ARGV[3] then
  return unwritten('HDEL', KEYS[1], 1)  -- a re-send: this edit is in place
end
if redis.call('HGET', KEYS[4], ARGV[6]) == ARGV[7] then
  return unwritten('HDEL', KEYS[1], 1)  -- a re-send after the job ran on: this edit's record
end
local score = redis.call('ZSCORE', KEYS[3], id)
if not score or redis.call('HGET', KEYS[1], id) ~= ARGV[2] then
  return unwritten('HDEL', KEYS[1], 0)
end
-- the unique lock to move with the args (read only: before the first write)
local U = {uniq = KEYS[10], uniqjob = KEYS[11], uniqexp = KEYS[12], old = ARGV[9], new = ARGV[10]}
local move_lock = U.old ~= U.new and redis.call('HGET', U.uniqjob, id) == U.old
  and redis.call('HGET', U.uniq, U.old) == id
local stale  -- a lock on the new digest left by a job gone or past its expiry (enqueue_unique)
if move_lock then
  stale = redis.call('HGET', U.uniq, U.new)
  if stale then
    local expiry = tonumber(redis.call('ZSCORE', U.uniqexp, U.new) or '0')
    if expiry > tonumber(ARGV[8]) and redis.call('HEXISTS', KEYS[1], stale) == 1 then
      return unwritten('HDEL', KEYS[1], -1)
    end
  end
end
redis.call('HSET', KEYS[1], id, ARGV[3])
if move_lock then
  local expiry = redis.call('ZSCORE', U.uniqexp, U.old)
  if stale and redis.call('HGET', U.uniqjob, stale) == U.new then
    redis.call('HDEL', U.uniqjob, stale)
  end
  redis.call('HDEL', U.uniq, U.old)
  redis.call('ZREM', U.uniqexp, U.old)
  redis.call('HSET', U.uniq, U.new, id)
  redis.call('HSET', U.uniqjob, id, U.new)
  if expiry then
    redis.call('ZADD', U.uniqexp, expiry, U.new)
  else
    redis.call('ZREM', U.uniqexp, U.new)
  end
end
if prio then
  local old = prio_of(redis.call('HGET', KEYS[2], id))
  local new = prio
  if new ~= 0 then
    redis.call('HSET', KEYS[2], id, new)
  else
    redis.call('HDEL', KEYS[2], id)
  end
  if ARGV[5] == '1' and new ~= old then  -- same FIFO sequence, under its new priority
    local moved = tonumber(score) + old * PRIO_STEP - new * PRIO_STEP
    redis.call('ZADD', KEYS[3], moved, id)
    local P = {on = redis.call('EXISTS', KEYS[6]) == 1, part = KEYS[6], seq = KEYS[7],
      pq = KEYS[8], pready = KEYS[9]}
    local p = P.on and redis.call('HGET', P.part, id)
    if p then  -- indexed anew: its entry under the old score goes
      redis.call('ZREM', P.pq, lim_entry(p, tonumber(score), id))
      lim_queued(P, id, moved, p)
    end
  end
end
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[5], ARGV[8], ARGV[6])
return 1
