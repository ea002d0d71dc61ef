-- move: take a waiting job out of one set and put it on its queue, into its scheduled set, or
-- delete it with every trace (admin actions: retry a dead job, run a scheduled job now,
-- reschedule, delete). Atomic: a job moves only if it is still in the source set.
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] seq   KEYS[4] idle   KEYS[5] source set
-- KEYS[6] target (the job's queue for 'queue', its scheduled set for 'schedule')
-- KEYS[7] errors   KEYS[8] recoveries   KEYS[9] done record   KEYS[10] unique
-- KEYS[11] unique_of_job   KEYS[12] unique_expiry   KEYS[13] checkins   KEYS[14] cancel requests
-- KEYS[15] attempts   KEYS[16] ended   KEYS[17] history_data
-- KEYS[18] history of the job name   KEYS[19] listening   KEYS[20] checkpoints
-- KEYS[21] dedup   KEYS[22] dedup_of_job   KEYS[23] workflow_of (see lib/workflows.lua)
-- KEYS[24] dedup_next   KEYS[25] dedup_reruns   KEYS[26] partitions
-- KEYS[27] partition queue of the job name   KEYS[28] its partitions ready (lib/limits.lua)
-- KEYS[29] the reply key of this call: its answer is kept there 10 minutes, and a re-sent call
--          (redis-py, after a lost reply) gives it back, doing nothing
-- KEYS[30] the idle pools of the job name (lib/wake.lua): a job put on its queue (or a dedup
--          rerun a delete hands its key to) wakes one of them (without it: every idle pool)
-- KEYS[31] the queue of the job name (the Dedup key's: a rerun waiting for the key of ARGV[14]
--          with no owner left takes it onto that queue, lib/dedup.lua dedup_owner)
-- KEYS[32] partitions waiting of the job name (optional, after KEYS[31]): a job deleted from
--          its queue whose partition is left with none indexed takes the partition's turn and
--          rate wait with it (lib/dedup.lua dedup_unindex)
-- ARGV[1] job id   ARGV[2] mode: queue | schedule | delete   ARGV[3] due ms (schedule)
-- ARGV[4] new envelope ('' keeps it)   ARGV[5] wake channel   ARGV[6] events channel
-- ARGV[7] job name   ARGV[8] now ms   ARGV[9] '1': a new envelope starts afresh (its last error
-- and recovery count go), '0': they stay   ARGV[10] the envelope the new one was made from
-- ('' = no check): when the stored one differs (the job ran and ended again since it was read),
-- nothing moves   ARGV[11] (modes queue, schedule; '' or absent = none) the enqueue_unique
-- digest the job takes again (its envelope's `u`: an admin action puts a dead or cancelled job
-- back to wait, whose start or cancel released its lock)   ARGV[12] that lock's expiry (ms),
-- with ARGV[8] now (ms): a lock another job holds, which exists and is within its expiry,
-- refuses the move (-1, nothing but the reply key written: two jobs never wait with one lock's
-- args); one held by nobody, by a job gone or past its expiry is taken, as enqueue_unique does
-- ARGV[13] (modes queue, schedule; '' or absent = none) the mode letter (s d f r) of the Dedup
-- key the job takes again (its envelope's `x`, admin/relock.py: a dead or cancelled job put back
-- to wait, whose end released its key)   ARGV[14] that key (`<name>:<key>`): one another live job
-- holds (or a rerun waiting for it takes, its owner gone) refuses the move (-2, nothing moved);
-- a key free, or whose owner is gone, is taken in the mode's waiting letter, as an enqueue takes it.
-- In mode r (rerun_latest) a started owner with no rerun waiting does not refuse it: the job waits
-- as that owner's rerun (in dedup_reruns, not in the target), as a duplicate enqueue would, and is
-- queued by the owner's end (lib/dedup.lua dedup_rerun_slot, dedup_wait_rerun; 1 is returned)
-- A deleted job is forgotten (no tombstone: its id may be used again); its ending is recorded
-- (history `deleted`, at the attempt it would have run next) and published (`deleted`).
-- A scheduled unique job moved later keeps its lock as much longer (its expiry moves with it).
-- Returns 1 when moved, 0 when the job was not in the source set (or its envelope was not
-- `expected`), -1 when the lock of ARGV[11] is another live job's, -2 when the Dedup key of
-- ARGV[14] is (nothing moved). A re-sent call answers as its first from the reply key, in every
-- mode (a guess from where the job is now answered 1 to the re-send of a call that moved
-- nothing, the job having got there otherwise), after the key checks, and writing nothing first
-- (lib/types.lua unwritten): a demoted master refuses it, where the new master may lack the
-- first call's move (not replicated); every other answer comes after a write. An unknown mode,
-- a due time (schedule) or a time (delete) that is not an integer in 0..MAX_MS is an error
-- before anything is written, and so is a key the mode touches of another type or (modes queue
-- and delete, and a move for later taking a Dedup key, whose orphaned rerun it may queue) a seq
-- that is not a counter: the job left its source set before INCR seq raised, and was in no set.
--@include types
--@include events
--@include prio
--@include jobstate
--@include dedup
--@include workflows
--@include limits
--@include wake
local id, mode = ARGV[1], ARGV[2]
if mode ~= 'queue' and mode ~= 'schedule' and mode ~= 'delete' then
  return redis.error_reply('errands: unknown move mode ' .. mode)
end
-- the due time (schedule) goes to ZADD, the time (delete) to ZADD and a JSON record, verbatim:
-- integers Redis reads, 0..MAX_MS (tonumber() took ' 5' and 'nan', which ZADD refused after the
-- job left its set)
local digest = ARGV[11] or ''
if (mode == 'schedule' and not is_int(ARGV[3], 0, MAX_MS))
    or (mode == 'delete' and not is_int(ARGV[8], 0, MAX_MS)) then
  return redis.error_reply('errands: move: bad time for ' .. mode)
end
if digest ~= '' and (mode == 'delete' or not is_int(ARGV[8], 0, MAX_MS)
    or not is_int(ARGV[12], 0, MAX_MS)) then
  return redis.error_reply('errands: move: a unique lock is taken only by a job put to wait, '
    .. 'with the time now and its expiry as integer ms')
end
local dmode, dkey = ARGV[13] or '', ARGV[14] or ''
if dmode ~= '' and (mode == 'delete' or #dmode ~= 1 or not string.find('sdfr', dmode, 1, true)
    or dkey == '' or not KEYS[31]) then
  return redis.error_reply('errands: move: a Dedup key is taken only by a job put to wait, '
    .. 'in mode s, d, f or r, with its key and its queue (KEYS[31])')
end
local expected = ARGV[10] or ''
local TYPES = {'HLEN', 'HLEN', 'GET', 'SCARD', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', false, 'HLEN',
  'HLEN', 'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', 'HLEN', 'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'HLEN',
  'HLEN', 'HLEN', 'ZCARD', 'HLEN', 'ZCARD', 'ZCARD', false, 'ZCARD', 'ZCARD', 'ZCARD'}
-- (seq: INCR'd by a move onto the queue, and by a Dedup key's rerun a move for later queues)
local wrong = wrong_type(function(j) return TYPES[j] end, 'nothing moved')
  or ((mode ~= 'schedule' or dmode ~= '') and not_counter(KEYS[3], 'nothing moved'))
  or (mode == 'delete' and wf_unfit_of(KEYS[23], id, 'nothing moved'))
if wrong then
  return wrong
end
local replied = redis.call('GET', KEYS[29])
if replied then  -- a re-send: its first call did the work (or found none to do)
  return unwritten('HDEL', KEYS[1], tonumber(replied))
end
if expected ~= '' and redis.call('HGET', KEYS[1], id) ~= expected then
  -- the new envelope was made from one that changed since: nothing moves
  redis.call('SET', KEYS[29], '0', 'PX', ADMIN_REPLY_MS)
  return 0
end
local was_due = redis.call('ZSCORE', KEYS[5], id)
if not was_due then
  redis.call('SET', KEYS[29], '0', 'PX', ADMIN_REPLY_MS)
  return 0
end
local U = {jobs = KEYS[1], uniq = KEYS[10], uniqjob = KEYS[11], uniqexp = KEYS[12]}
if digest ~= '' and unique_holder(U, id, digest, tonumber(ARGV[8])) then
  redis.call('SET', KEYS[29], '-1', 'PX', ADMIN_REPLY_MS)  -- another live job's lock
  return -1
end
local d = {jobs = KEYS[1], prio = KEYS[2], seq = KEYS[3], idle = KEYS[4], wake = ARGV[5],
  dedup = KEYS[21], dedupjob = KEYS[22], next = KEYS[24], reruns = KEYS[25], idlefor = KEYS[30]}
local rerun = false  -- rerun_latest: it waits as the rerun of the started owner of its key
if dmode ~= '' then  -- its Dedup key: held by another live job, nothing moves
  if redis.call('HEXISTS', d.dedupjob, id) == 1 then
    dedup_ended(d, id, KEYS[31])  -- (a record its end left, none in this version: it goes)
  end
  local owner = dedup_owner(d, dkey, KEYS[31])  -- (an owner gone: free; a rerun left takes it)
  rerun = owner and owner ~= id and dmode == 'r' and dedup_rerun_slot(d, dkey, owner)
  if owner and owner ~= id and not rerun then
    redis.call('SET', KEYS[29], '-2', 'PX', ADMIN_REPLY_MS)
    return -2
  end
end
redis.call('ZREM', KEYS[5], id)
redis.call('SET', KEYS[29], '1', 'PX', ADMIN_REPLY_MS)
redis.call('DEL', KEYS[9])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], id, ARGV[4])
  if ARGV[9] == '1' then
    redis.call('HDEL', KEYS[7], id)
    redis.call('HDEL', KEYS[8], id)
  end
end
if mode == 'delete' then
  local k = {jobs = KEYS[1], prio = KEYS[2], errors = KEYS[7], recov = KEYS[8], checkin = KEYS[13],
    cancelreq = KEYS[14], att = KEYS[15], uniqjob = KEYS[11], uniq = KEYS[10], uniqexp = KEYS[12],
    ended = KEYS[16], ckpt = KEYS[20], part = KEYS[26], histdata = KEYS[17],
    listening = KEYS[19], events = ARGV[6]}
  local env = redis.call('HGET', k.jobs, id)
  if KEYS[5] == KEYS[6] then  -- deleted from its queue: its partition index entry goes too
    dedup_unindex({part = KEYS[26], pq = KEYS[27]}, id, tonumber(was_due),
      KEYS[32] and {pready = KEYS[28], pwait = KEYS[32]})
  end
  record_end(k, KEYS[18], id, ARGV[7], 'deleted', env, nil, ARGV[8], true, ',"reason":"deleted"')
  forget(k, {id}, nil)
  dedup_ended(d, id, KEYS[6])  -- (KEYS[6] is the job's queue for a delete)
  wf_end(KEYS[23], id, 'cancelled', nil)  -- a member deleted while it waited
elseif rerun then  -- (queued by the owner's end, as an enqueue's rerun: a due time counts not)
  dedup_wait_rerun(d, dkey, id)
elseif mode == 'queue' then
  local seq = redis.call('INCR', KEYS[3])
  local prio = prio_of(redis.call('HGET', KEYS[2], id))
  redis.call('ZADD', KEYS[6], queue_score(seq, prio), id)
  local P = {on = redis.call('EXISTS', KEYS[26]) == 1, part = KEYS[26], seq = KEYS[3],
    pq = KEYS[27], pready = KEYS[28]}
  lim_queued(P, id, queue_score(seq, prio))
  if KEYS[30] then
    wake_one(KEYS[30], ARGV[5] .. ':', false)
  elseif redis.call('SCARD', KEYS[4]) > 0 then
    redis.call('PUBLISH', ARGV[5], 'move')
  end
elseif digest == '' then
  redis.call('ZADD', KEYS[6], ARGV[3], id)
  -- a waiting unique job keeps its lock as long after its new due time as after the old one
  local held = redis.call('HGET', KEYS[11], id)
  local expiry = held and redis.call('ZSCORE', KEYS[12], held)
  local later = tonumber(ARGV[3]) - tonumber(was_due)
  if expiry and later > 0 and redis.call('HGET', KEYS[10], held) == id then
    redis.call('ZADD', KEYS[12], tonumber(expiry) + later, held)
  end
else
  redis.call('ZADD', KEYS[6], ARGV[3], id)
end
if digest ~= '' then  -- the job waits again: it takes its lock (a stale holder's entry goes)
  unique_take(U, id, digest, ARGV[12])
end
if dmode ~= '' and not rerun then  -- it waits again holding its Dedup key, as an enqueue's job
  redis.call('HSET', d.dedup, dkey, id)
  redis.call('HSET', d.dedupjob, id, dmode .. dkey)
end
return 1
