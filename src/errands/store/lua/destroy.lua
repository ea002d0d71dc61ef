-- destroy: remove every trace of a job, wherever it is, in one step. A waiting, dead or
-- cancelled job is forgotten at once (no tombstone: its id may be used again), with its done
-- record and the history of its attempts; a running one is asked to its pool (a `destroy`
-- request, kept until the attempt settles: its pool, or the reaper of its pool, drops it).
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] errors   KEYS[4] recoveries   KEYS[5] checkins
-- KEYS[6] cancel requests   KEYS[7] attempts   KEYS[8] unique_of_job   KEYS[9] unique
-- KEYS[10] unique_expiry   KEYS[11] ended   KEYS[12] queue   KEYS[13] scheduled set
-- KEYS[14] retry set   KEYS[15] dead   KEYS[16] cancelled   KEYS[17] done record
-- KEYS[18] history   KEYS[19] history_data   KEYS[20] history of the job name
-- KEYS[21] listening   KEYS[22] checkpoints   KEYS[23] dedup   KEYS[24] dedup_of_job
-- KEYS[25] workflow_of (see lib/workflows.lua)   KEYS[26] dedup_next
-- KEYS[27] dedup_reruns (a dedup rerun waiting there is destroyed like a queued job)
-- KEYS[28] seq   KEYS[29] idle   KEYS[30] partitions (see lib/limits.lua)
-- KEYS[31] partition queue of the job name   KEYS[32] its partitions ready: a dedup rerun
--          handed the key of the job destroyed is indexed there (lib/dedup.lua dedup_index)
-- KEYS[33] partitions waiting of the job name (optional): a queued job's partition left with
--          none indexed loses its turn and rate wait (lib/dedup.lua dedup_unindex)
-- KEYS[34] the reply key of this call (optional): its reply is kept there 10 minutes, and a
--          re-sent call (redis-py, after a lost reply) gives it back, doing nothing
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] control channel   ARGV[4] events channel
-- ARGV[5] attempts to erase from the history (0..n; n is at least what its envelope counts,
--         at most 10,000)   ARGV[6] wake channel   ARGV[7] its edits to erase from the
--         history ("<id>:e1"..; Client.update_job; at least what its envelope counts, its
--         "e": an edit made after the caller looked the job up goes too), at most 1,000
-- Returns 'destroyed', 'running' (its pool was asked) or 'unknown' (no trace of it found). A
-- re-sent call answers as its first (with KEYS[34]: without it, 'unknown', no trace being left),
-- after the key checks, and writing nothing first (lib/types.lua unwritten): a demoted master
-- refuses it, where the new master may lack the first call's work (not replicated). Every
-- other answer comes after a write (a replica refuses the call there).
-- A key of another type, or a seq that is not a counter (a dedup rerun or a released workflow
-- member INCRs it after the first write), fails the call before its first write.
--@include events
--@include jobstate
--@include dedup
--@include workflows
--@include types
--@include edits
local id, name = ARGV[1], ARGV[2]
-- the done record is DELeted, the reply key SET, whatever their type; `listening` is read with
-- EXISTS/pcall
local TYPES = {'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD',
  'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', false, 'ZCARD', 'HLEN', 'ZCARD', false,
  'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', false, 'SCARD', 'HLEN', 'ZCARD', 'ZCARD',
  'ZCARD', false}
local wrong = wrong_type(function(j) return TYPES[j] end, 'nothing destroyed')
  or (KEYS[28] and not_counter(KEYS[28], 'nothing destroyed'))
  or (KEYS[25] and wf_unfit_of(KEYS[25], id, 'nothing destroyed'))
if wrong then
  return wrong
end
local replied = KEYS[34] and redis.call('GET', KEYS[34])
if replied then  -- a re-send: its first call did the work
  return unwritten('HDEL', KEYS[1], replied)
end
local k = {jobs = KEYS[1], prio = KEYS[2], errors = KEYS[3], recov = KEYS[4], checkin = KEYS[5],
  cancelreq = KEYS[6], att = KEYS[7], uniqjob = KEYS[8], uniq = KEYS[9], uniqexp = KEYS[10],
  ended = KEYS[11], ckpt = KEYS[22], part = KEYS[30], hist = KEYS[18], histdata = KEYS[19],
  listening = KEYS[21], events = ARGV[4]}
local env = redis.call('HGET', k.jobs, id)
local last, edits = tonumber(ARGV[5]) or 0, tonumber(ARGV[7]) or 0
if env then
  last = math.max(last, attempt_of(env, name))
  edits = math.max(edits, edits_of(env))
end
last = math.min(last, 10000)
local found = env ~= false
local status = 'destroyed'
if redis.call('HEXISTS', k.att, id) == 1 then
  redis.call('HSET', k.cancelreq, id, 'destroy')
  redis.call('PUBLISH', ARGV[3], 'destroy:' .. id)
  status = 'running'
else
  -- a queued job of a partition: its index entry goes with it (lib/dedup.lua dedup_unindex;
  -- read before `forget` drops its partition)
  local queued = KEYS[31] and redis.call('ZSCORE', KEYS[12], id)
  if queued then
    dedup_unindex({part = KEYS[30], pq = KEYS[31]}, id, tonumber(queued),
      KEYS[33] and {pready = KEYS[32], pwait = KEYS[33]})
  end
  for _, i in ipairs({12, 13, 14, 15, 16, 27}) do
    if redis.call('ZREM', KEYS[i], id) == 1 then
      found = true
    end
  end
  forget(k, {id}, nil)
  local d = {jobs = KEYS[1], prio = KEYS[2], seq = KEYS[28], idle = KEYS[29], wake = ARGV[6],
    dedup = KEYS[23], dedupjob = KEYS[24], next = KEYS[26], reruns = KEYS[27]}
  dedup_ended(d, id, KEYS[12])
  if wf_end(KEYS[25], id, 'cancelled', nil) then  -- a workflow member destroyed while it waited
    found = true
  end
end
if redis.call('DEL', KEYS[17]) == 1 then found = true end
if redis.call('ZREM', k.ended, id) == 1 then found = true end
local attempts = {}
for i = 0, last do
  attempts[#attempts + 1] = id .. ':' .. i
  if #attempts == 1000 or i == last then
    if redis.call('HDEL', k.histdata, unpack(attempts)) > 0 then found = true end
    redis.call('ZREM', k.hist, unpack(attempts))
    redis.call('ZREM', KEYS[20], unpack(attempts))
    attempts = {}
  end
end
for i = 1, math.min(edits, 1000) do
  attempts[#attempts + 1] = id .. ':e' .. i
end
if #attempts > 0 then
  if redis.call('HDEL', k.histdata, unpack(attempts)) > 0 then found = true end
  redis.call('ZREM', k.hist, unpack(attempts))
  redis.call('ZREM', KEYS[20], unpack(attempts))
end
if not found then
  return 'unknown'
end
if status == 'destroyed' then
  record_end(k, KEYS[20], id, name, 'deleted', nil, nil, 0, false, ',"reason":"destroyed"')
end
if KEYS[34] then
  redis.call('SET', KEYS[34], status, 'PX', ADMIN_REPLY_MS)
end
return status
