-- cancel: a waiting job (queued, scheduled or retrying) is moved to the cancelled set and never
-- runs; a running job is signalled to the pool that runs it, which cancels its handler.
-- KEYS[1] jobs   KEYS[2] queue   KEYS[3] scheduled set   KEYS[4] retry set   KEYS[5] cancelled
-- KEYS[6] dead   KEYS[7] done record   KEYS[8] unique   KEYS[9] unique_of_job
-- KEYS[10] unique_expiry   KEYS[11] listening   KEYS[12] cancel requests   KEYS[13] attempts
-- KEYS[14] recoveries   KEYS[15] dedup   KEYS[16] dedup_of_job
-- KEYS[17] workflow_of (see lib/workflows.lua)   KEYS[18] dedup_next
-- KEYS[19] dedup_reruns (a rerun waiting there is cancelled like a queued job)   KEYS[20] seq
-- KEYS[21] priorities   KEYS[22] idle   KEYS[23] history_data
-- KEYS[24] history of the job name   KEYS[25] names (a held member's may be in none yet: the
-- history's trim goes over the names)
-- KEYS[26] partitions (a held member's, see lib/limits.lua)   KEYS[27] partition queue of the
-- job name   KEYS[28] its partitions ready: a dedup rerun handed the key of the job cancelled
-- is indexed there (lib/dedup.lua dedup_index)   KEYS[29] the reply key of this call
-- (optional; store/keys.py reply): a `cancelled` or `running` answer is kept there 10 minutes
-- (lib/types.lua ADMIN_REPLY_MS, as by destroy.lua, move.lua and wf_cancel.lua)
-- KEYS[30] partitions waiting of the job name (optional, after KEYS[29]): a queued job's
-- partition left with none indexed loses its turn and rate wait (lib/dedup.lua dedup_unindex)
-- ARGV[1] job id   ARGV[2] now ms   ARGV[3] record TTL ms   ARGV[4] control channel
-- ARGV[5] events channel   ARGV[6] job name   ARGV[7] wake channel   ARGV[8] this call's token
-- (letters and digits; '' none): kept in the done record of the job it cancels
-- A running job whose destroy was requested stays to be destroyed (signalled as such).
-- Returns 'cancelled', 'running' (signalled), 'dead', 'already', 'finished' (its done record
-- says so: it ended before this call) or 'unknown' (also for a job that is in none of those
-- places and runs nowhere: no request is left behind for it).
-- A workflow member still waiting for its dependencies (its envelope in its run, not in
-- `jobs`) is ended as cancelled in its run (lib/workflows.lua), and then cancelled like a
-- waiting job: its envelope goes to `jobs`, it to the cancelled set.
-- A waiting job cancelled is recorded in the history (`cancelled`, at the attempt it would
-- have run next, see lib/jobstate.lua) and published.
-- A re-sent call (redis-py, after a lost reply) answers as its first call: 'cancelled' for the
-- job it cancelled, 'running' for the job it signalled, both from KEYS[29], before anything
-- else (the job may have been cancelled by its pool since, or finished, and a re-send then said
-- 'already' or 'finished'; or rescheduled by another call, and a re-send cancelled it again);
-- without KEYS[29], 'cancelled' from its done record holding this call's token. Without a
-- token and KEYS[29] the re-send says 'already' of the job it cancelled (its token is what tells
-- it apart), and whatever it finds of a job it signalled: store/adminscripts.py cancel draws a
-- token when its caller gives none. 'dead', 'finished' and 'unknown' are read, and a re-send
-- reads them again (unchanged but by another call). An answer read before any write
-- (the job's envelope gone: finished, cancelled, unknown) writes nothing first
-- (lib/types.lua unwritten): a demoted master refuses it, where the new master may still hold
-- the job waiting or running (an ack or a cancel not replicated; a job enqueued since; the
-- other answers come after a ZREM, which a replica refuses already). A time or TTL that is not a
-- number, a bad token, a key of another type, a seq that is not a counter (a dedup rerun or a
-- released workflow member INCRs it after the first write) or a reply key holding no answer of
-- this script is an error before anything is written.
--@include events
--@include jobstate
--@include dedup
--@include workflows
--@include types
local id, call = ARGV[1], ARGV[8] or ''
if not is_int(ARGV[2]) or not is_int(ARGV[3]) or tonumber(ARGV[3]) <= 0
    or not string.match(call, '^%w*$') then
  return redis.error_reply('errands: cancel: bad time, TTL or token: nothing cancelled')
end
-- the done record is SET over any type; `listening` is read with EXISTS/pcall; the reply key's
-- GET (a string of another type: an error) is its read too
local TYPES = {'HLEN', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', false, 'HLEN', 'HLEN', 'ZCARD',
  false, 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', false, 'HLEN', 'SCARD',
  'HLEN', 'ZCARD', 'SCARD', 'HLEN', 'ZCARD', 'ZCARD', 'GET', 'ZCARD'}
local wrong, got = wrong_type(function(j) return TYPES[j] end, 'nothing cancelled')
wrong = wrong or (KEYS[20] and not_counter(KEYS[20], 'nothing cancelled'))
  or wf_unfit_of(KEYS[17], id, 'nothing cancelled')
if wrong then
  return wrong
end
if got[29] then  -- a re-send of a call that cancelled the job or signalled its pool
  if got[29] ~= 'cancelled' and got[29] ~= 'running' then
    return redis.error_reply('errands: cancel: ' .. KEYS[29] .. ' holds no answer of this script: '
      .. 'nothing cancelled, got ' .. string.sub(got[29], 1, 40))
  end
  return unwritten('ZREM', KEYS[5], got[29])
end
local mark = call ~= '' and (',"call":"' .. call .. '"}') or nil

-- cancelled by this very call (this is a re-send): its done record ends with its token
local function by_this_call()
  local record = mark and redis.call('GET', KEYS[7])
  return record and string.sub(record, -#mark) == mark
end
local d = {jobs = KEYS[1], dedup = KEYS[15], dedupjob = KEYS[16], next = KEYS[18],
  reruns = KEYS[19], seq = KEYS[20], prio = KEYS[21], idle = KEYS[22], wake = ARGV[7]}

-- a waiting job (or a held member) leaves for the cancelled set: recorded, published
local function cancelled(env)
  redis.call('ZADD', KEYS[5], ARGV[2], id)
  redis.call('HDEL', KEYS[14], id)
  local record = '{"id":"' .. id .. '","status":"cancelled","job":' .. env .. ',"finished":' .. ARGV[2]
    .. (mark or '}')
  redis.call('SET', KEYS[7], record, 'PX', ARGV[3])
  local h = {histdata = KEYS[23], listening = KEYS[11], events = ARGV[5]}
  record_end(h, KEYS[24], id, ARGV[6], 'cancelled', env, nil, ARGV[2], true, '')
  if KEYS[29] then  -- (its re-send answers so before anything: the job may be back by then)
    redis.call('SET', KEYS[29], 'cancelled', 'PX', ADMIN_REPLY_MS)
  end
  return 'cancelled'
end

local env = redis.call('HGET', KEYS[1], id)
if not env then
  local record = redis.call('GET', KEYS[7])
  if record then
    local head = '{"id":"' .. id .. '","status":"'
    local status = string.sub(record, #head + 1, #head + 9)
    -- (ack.lua's record: compact, or naming its attempt)
    if string.match(record, '^%d+$') or string.sub(record, 1, 5) == '{"j":' then
      return unwritten('ZREM', KEYS[5], 'finished')
    elseif string.sub(record, 1, #head) == head and status == 'finished"' then
      return unwritten('ZREM', KEYS[5], 'finished')
    elseif string.sub(record, 1, #head) == head and status == 'cancelled' then
      return unwritten('ZREM', KEYS[5], by_this_call() and 'cancelled' or 'already')
    end
  end
  -- a workflow member that waits for its dependencies: its envelope is in its run
  local run = redis.call('HGET', KEYS[17], id)
  local W = run and wf_keys(KEYS[17], run)
  local node = run and string.sub(id, #run + 2)
  local held = run and redis.call('HGET', W.env, node)
  local spec = held and redis.call('HGET', W.nodes, node)
  if held and wf_end(KEYS[17], id, 'cancelled', '{"error":"cancelled"}') then
    redis.call('HSET', KEYS[1], id, held)
    redis.call('SADD', KEYS[25], ARGV[6])  -- (its history record is then trimmed: see KEYS)
    spec = spec and wf_spec(spec)  -- its priority and partition, as wf_queue would store them
    if spec and spec.p ~= 0 then
      redis.call('HSET', KEYS[21], id, spec.p)
    end
    if spec and spec.k and KEYS[26] then
      redis.call('HSET', KEYS[26], id, spec.k)
    end
    return cancelled(held)
  end
  return unwritten('ZREM', KEYS[5], 'unknown')  -- (wf_end ended no member: it wrote nothing)
end
-- a queued job of a partition: its index entry goes with it (lib/dedup.lua dedup_unindex)
local queued = KEYS[27] and redis.call('ZSCORE', KEYS[2], id)
if queued then
  dedup_unindex({part = KEYS[26], pq = KEYS[27]}, id, tonumber(queued),
    KEYS[30] and {pready = KEYS[28], pwait = KEYS[30]})
end
for _, k in ipairs({2, 3, 4, 19}) do
  if redis.call('ZREM', KEYS[k], id) == 1 then
    cancelled(env)
    release_unique({uniqjob = KEYS[9], uniq = KEYS[8], uniqexp = KEYS[10]}, id)
    dedup_ended(d, id, KEYS[2])
    wf_end(KEYS[17], id, 'cancelled', nil)
    return 'cancelled'
  end
end
if redis.call('ZSCORE', KEYS[6], id) then
  return 'dead'
end
if redis.call('ZSCORE', KEYS[5], id) then
  return by_this_call() and 'cancelled' or 'already'
end
if redis.call('HEXISTS', KEYS[13], id) == 0 then
  return 'unknown'
end
-- a destroy asked before stands (Client.destroy: every trace goes at the attempt's end); a
-- cancel turned it into a cancel, the job ending in the cancelled set with its record and history
local kind = redis.call('HGET', KEYS[12], id) == 'destroy' and 'destroy' or 'cancel'
redis.call('HSET', KEYS[12], id, kind)
redis.call('PUBLISH', ARGV[4], kind .. ':' .. id)
if KEYS[29] then
  redis.call('SET', KEYS[29], 'running', 'PX', ADMIN_REPLY_MS)
end
return 'running'
