-- settle: finish a job that did not succeed: retry later, bury in the dead set, drop, mark
-- cancelled, or put back on its queue (graceful stop, snooze). Fenced per attempt like ack:
-- nothing happens unless the job's attempt record is this pool's attempt.
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] errors   KEYS[7] stats   KEYS[8] seq   KEYS[9] idle
-- KEYS[10] target: retry set (retry), scheduled set (later), dead set (dead), queue (requeue),
--          cancelled set (cancelled)
-- KEYS[11] history_data   KEYS[12] history of the job name
-- KEYS[13] done record of the job   KEYS[14] listening   KEYS[15] checkins
-- KEYS[16] cancel requests   KEYS[17] cancelled set   KEYS[18] attempts   KEYS[19] unique_of_job
-- KEYS[20] unique   KEYS[21] unique_expiry   KEYS[22] ended   KEYS[23] checkpoints
-- KEYS[24] dedup   KEYS[25] dedup_of_job   KEYS[26] workflow_of (see lib/workflows.lua)
-- KEYS[27] dedup_next   KEYS[28] dedup_reruns   KEYS[29] the queue of the job name
-- KEYS[30] partitions   KEYS[31] partitions running of the job name   KEYS[32] its partition
-- queue   KEYS[33] its partitions ready (see lib/limits.lua)   KEYS[34] pools
-- KEYS[35] its rate log (read and written only with ARGV[21])
-- KEYS[36] the idle pools of the job name (lib/wake.lua; absent: every idle pool is woken)
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] mode: retry | later | dead | drop | requeue | cancelled
-- ARGV[4] new envelope ('' keeps it)   ARGV[5] due ms (retry, later), time of death ms (dead),
--         or queue score to go back to (requeue; 0 = behind the jobs waiting, 'head' = ahead of
--         the jobs of its priority waiting: an iterable job stopped at a checkpoint)
-- ARGV[6] error JSON ('' none)   ARGV[7] dead/cancelled set max size   ARGV[8] drop dead jobs
-- older than this ms   ARGV[9] wake channel   ARGV[10] stats counter to increment ('' none)
-- ARGV[11] now ms   ARGV[12] attempt   ARGV[13] '1' to record history   ARGV[14] events channel
-- ARGV[15] done-record TTL ms   ARGV[16] started ms   ARGV[17] pool id
-- ARGV[18] attempt token; '*<token>': an orphan of this pool (the orphan sweep's: in its
--          in-progress set, held by none of its tasks) at the attempt the sweep read, settled
--          only while that is still the job's attempt and its entry is in this pool's set (a
--          job fetched again since, by this pool too, is left alone); '*-': its job had no
--          attempt recorded when the sweep read it (a state no script leaves: lost data),
--          settled only while none is and its entry is in this pool's set; a bare '*': any attempt
--          of this pool (not the worker's: tests and tools)
-- ARGV[19] the envelope as JSON for the records ('' = the stored envelope is JSON)
-- ARGV[20] the envelope for the history ('' = as for the records; a large job's has its args
--          omitted)
-- ARGV[21] '1': a job fetched ahead going back unstarted (requeue, this attempt's token): its
--          start is uncounted from its rates (the start never happened; behind the attempt
--          fence, so once), at the Redis ms its fetch counted it, which the attempt records
--          ("<pool>:<n>@<ms>", fetch.lua; none recorded: nothing uncounted), never a time the
--          caller gives ('' = none)   ARGV[22] the limits spec it was fetched under
--          (limits/spec.py)   ARGV[23] '0': the job's name has no concurrency limit (the
--          running slot it frees wakes no pool; absent or else: it wakes one, as before)
-- A cancel requested while the job ran turns retry/later/requeue into cancelled: a job whose
-- cancel was acknowledged never runs again. A destroy requested while it ran turns every mode
-- into a drop without a tombstone, history or record (dead and cancelled too: every trace goes,
-- as reap.lua does; counted `cancelled`, as the pool's own drop of a destroyed job).
-- Returns 1 when settled, 0 when the job was not this attempt's any more (a zombie: its pool's
-- lease was taken; or a stale attempt). A re-sent call (redis-py, after a lost reply) answers 1
-- as its first call did and writes nothing (see settled_before); but once another pool has
-- fetched the job since (a requeue, or a retry or snooze come due), a re-send without an error
-- to recognise answers 0: harmless, the caller only logs that it was not settled (the first
-- call's work stands, nothing is retried). A job this call cannot settle is refused before
-- anything of it is written, and answered with the reason (a string reply, not an error; sent
-- again, it is refused again until repaired): an unknown mode, a number that is not a whole one
-- as Redis spells one (is_int: not ' 5', '007', '1.0', nan, inf, 0x10, 1.5; a queue score too),
-- too few KEYS or ARGV, a key of another type, a seq that is not a counter (a requeue, a
-- partition's turn, a dedup rerun or a released workflow member INCR it after the first write),
-- a hash field it HINCRBYs that is not one (but a stats counter: replaced by the call's count,
-- lib/types.lua's stat_add), a key of its workflow run of another type (see refusal()).
-- Wakes one idle pool serving the job's name (lib/wake.lua), not every idle pool, when a slot
-- (its name has a concurrency limit: ARGV[23] not '0'), a partition (given a turn again) or the
-- job itself (requeued) is free; a retry, snooze, burial or drop of a name without a limit wakes
-- none (the pool popped lost its idle mark, its hand-off mark too, for nothing to fetch).
-- A job buried or cancelled is not trimmed from its set by its own call (its re-send finds it
-- there; the next trim takes it). A workflow member parked in the dead set without ending that a
-- trim takes ends as failed in this call, its run settled (lib/settrim.lua).
-- Several jobs in one call (the failed jobs of a batch, longwork/): ARGV[1] '{many}' (never a job
-- id), ARGV[2] N jobs, ARGV[3] keys per job, ARGV[4] args per job, then the ARGV above of each
-- job in turn; KEYS: the KEYS above of each job in turn (the counts checked against KEYS and
-- ARGV before the first write: counts that do not fit are answered with the reason, a string,
-- nothing written). Returns the list of each job's reply (1, 0 or its refusal): every job is
-- checked before the first write, and a job refused does not hold the others of the call.
--@include settrim
--@include longwork
--@include dedup
--@include limits
--@include types
--@include wake
local MODES = {retry = 1, later = 1, dead = 1, drop = 1, requeue = 1, cancelled = 1}

-- an error message for ARGV that cannot be settled (checked before any write), else nil
local function invalid(ARGV)
  for i = 1, 19 do
    if type(ARGV[i]) ~= 'string' then
      return 'errands: settle: ARGV[' .. i .. '] is missing'
    end
  end
  if not MODES[ARGV[3]] then
    return 'errands: unknown settle mode ' .. tostring(ARGV[3])
  end
  for _, i in ipairs({7, 8, 11, 12, 15, 16}) do
    if not is_int(ARGV[i]) then
      return 'errands: settle: ARGV[' .. i .. '] is not a whole number: nothing settled'
    end
  end
  if not is_int(ARGV[5]) and not (ARGV[3] == 'requeue' and ARGV[5] == 'head') then
    return 'errands: settle: bad score ' .. tostring(ARGV[5]) .. ': nothing settled'
  end
  return lim_bad_unstart(ARGV[21], ARGV[22])
end

-- this call's attempt does not hold the job (any more): was it settled by this very call (a
-- re-send: 1, as the first call answered) or is the call fenced off (0)? Settled by it: the job's
-- last error is the one this call records (a failure: retry, dead, drop); or, while this pool
-- holds its lease (no reaper took its jobs), no attempt holds the job and it is where this call
-- puts it (gone, for a drop; gone without a tombstone or result record, for a destroy requested
-- meanwhile: also a failure's, whose error went with it; a retry without an error: in its retry
-- set). An ack leaves a tombstone or a result record, so an orphan acked since the sweep read it
-- is not taken for its requeue; but a job destroyed while it ran and then acked leaves neither,
-- as the destroy of this call's own would: its orphan requeue answers 1 (nothing was requeued;
-- the sweep counts it). A stale attempt of this pool sending the job where it is, at the same
-- score, is taken for a re-send.
-- Reads only, on the fenced path: the common path pays nothing.
local function settled_before(KEYS, ARGV, attempt)
  local id, mode = ARGV[1], ARGV[3]
  if ARGV[6] ~= '' and redis.call('HGET', KEYS[6], id) == ARGV[6] then
    return true
  end
  if attempt or not KEYS[34] or not redis.call('ZSCORE', KEYS[34], ARGV[17]) then
    return false
  end
  if redis.call('HEXISTS', KEYS[1], id) == 0 then  -- (acked: a tombstone or a result record)
    return mode == 'drop'
      or (not redis.call('ZSCORE', KEYS[22], id) and redis.call('EXISTS', KEYS[13]) == 0)
  end
  local function at(set, score)
    local found = redis.call('ZSCORE', set, id)
    return found ~= false and (score == nil or tonumber(found) == tonumber(score))
  end
  if mode == 'cancelled' or mode == 'dead' then
    return at(KEYS[10], ARGV[5])
  elseif mode == 'drop' then
    return false
  end
  local score = ARGV[5]  -- (a requeue behind the others or at the head: where it landed)
  if mode == 'requeue' and (score == 'head' or tonumber(score) == 0) then
    score = nil
  end
  return at(KEYS[10], score) or at(KEYS[17], ARGV[11])  -- (or cancelled on request)
end
-- settle one job whose call refusal() let through (KEYS and ARGV of that job, documented above;
-- repairs: stats key -> its fields read not counters, which stat_add replaces, kept over the jobs
-- of one call: the first job to count a field replaces it, the next ones count on)
local function settle_one(KEYS, ARGV, repairs)
local id, name, mode = ARGV[1], ARGV[2], ARGV[3]
local k = {jobs = KEYS[1], prio = KEYS[4], errors = KEYS[6], recov = KEYS[5], checkin = KEYS[15],
  cancelreq = KEYS[16], att = KEYS[18], uniqjob = KEYS[19], uniq = KEYS[20], uniqexp = KEYS[21],
  ended = KEYS[22], ckpt = KEYS[23], part = KEYS[30]}
local P = {on = redis.call('EXISTS', KEYS[30]) == 1, part = KEYS[30], seq = KEYS[8],
  prun = KEYS[31], pq = KEYS[32], pready = KEYS[33]}
local freed, unstarts = false, {}
local d = {jobs = KEYS[1], prio = KEYS[4], seq = KEYS[8], idle = KEYS[9], wake = ARGV[9],
  dedup = KEYS[24], dedupjob = KEYS[25], next = KEYS[27], reruns = KEYS[28], idlefor = KEYS[36]}
local attempt = redis.call('HGET', k.att, id)
if string.sub(ARGV[18], 1, 1) == '*' then
  -- an orphan of this pool (in its in-progress set, held by none of its tasks): its attempt
  -- must be the one the sweep saw ('*' alone: if recorded, this pool's), and the entry must be
  -- in this pool's set (a re-send finds neither: settled_before)
  local seen, ours = string.sub(ARGV[18], 2), ARGV[17] .. ':'
  if seen == '-' then  -- (no attempt recorded when the sweep read it: only while none is)
    if attempt then
      return unwritten('ZREM', KEYS[3], settled_before(KEYS, ARGV, attempt) and 1 or 0)
    end
  elseif seen ~= '' and attempt ~= ours .. seen then
    return unwritten('ZREM', KEYS[3], settled_before(KEYS, ARGV, attempt) and 1 or 0)
  elseif attempt and string.sub(attempt, 1, #ours) ~= ours then
    return unwritten('ZREM', KEYS[3], 0)
  end
  if redis.call('ZREM', KEYS[3], id .. ':' .. name) == 0 then
    return settled_before(KEYS, ARGV, attempt) and 1 or 0
  end
  redis.call('HINCRBY', KEYS[2], name, -1)
  freed = lim_release(P, id)
else
  if attempt ~= ARGV[17] .. ':' .. ARGV[18] then
    return unwritten('ZREM', KEYS[3], settled_before(KEYS, ARGV, attempt) and 1 or 0)
  end
  local at = ARGV[21] == '1' and mode == 'requeue' and lim_fetched_at(attempt)
  if at then  -- (read before the first write)
    P.prate = KEYS[35]
    unstarts = lim_unstarts(P, lim_spec(ARGV[22]), id, at)
  end
  if redis.call('ZREM', KEYS[3], id .. ':' .. name) == 1 then
    redis.call('HINCRBY', KEYS[2], name, -1)
    freed = lim_release(P, id)
  end
end
redis.call('HDEL', k.att, id)
redis.call('HDEL', k.checkin, id)
call_chunked('HSET', KEYS[35], unstarts)  -- (a spec may name more windows than unpack takes)
local target, score, counter, history = KEYS[10], ARGV[5], ARGV[10], ARGV[13] == '1'
local request = redis.call('HGET', k.cancelreq, id)
local destroyed = false
if request then
  redis.call('HDEL', k.cancelreq, id)
  destroyed = request == 'destroy'  -- forgotten entirely, no tombstone: the id may be used again
  if destroyed then  -- whatever the ending (a last failure too: no dead set, history, record)
    mode, history, counter = 'drop', false, 'cancelled'
  elseif mode == 'retry' or mode == 'later' or mode == 'requeue' then
    mode, target, score, counter = 'cancelled', KEYS[17], ARGV[11], 'cancelled'
  end
end
if counter ~= '' then
  stat_add(KEYS[7], counter, 1, repairs[KEYS[7]])  -- (lib/types.lua)
end
if ARGV[4] ~= '' then
  redis.call('HSET', k.jobs, id, ARGV[4])
end
if ARGV[6] ~= '' then
  redis.call('HSET', k.errors, id, ARGV[6])
end
if mode == 'retry' or mode == 'dead' or mode == 'drop' or mode == 'cancelled' then
  local env = ARGV[19]
  if env == '' then
    env = redis.call('HGET', k.jobs, id) or 'null'
  end
  local err = ARGV[6]
  if err == '' then err = 'null' end
  local status = mode
  if mode == 'retry' then status = 'failed' elseif mode == 'drop' then status = 'dropped' end
  local function record_of(job)
    return '{"id":"' .. id .. '","status":"' .. status .. '","job":' .. job
      .. ',"error":' .. err .. ',"started":' .. ARGV[16] .. ',"finished":' .. ARGV[11]
      .. ',"attempt":' .. ARGV[12] .. '}'
  end
  local record = record_of(env)
  if history then
    local hk = id .. ':' .. ARGV[12]
    local henv = ARGV[20] or ''
    redis.call('HSET', KEYS[11], hk, henv == '' and record or record_of(henv))
    redis.call('ZADD', KEYS[12], ARGV[11], hk)
  end
  if mode == 'cancelled' and tonumber(ARGV[15]) > 0 then
    redis.call('SET', KEYS[13], record, 'PX', ARGV[15])
  end
  if redis.call('EXISTS', KEYS[14]) == 1 then
    ev_publish(KEYS[14], ARGV[14], id, '{"event":"' .. status .. '","id":"' .. id .. '","name":"'
      .. name .. '","error":' .. err .. '}')
  end
end
if (mode == 'dead' or mode == 'drop' or mode == 'cancelled') and dedup_any(d) then
  dedup_ended(d, id, KEYS[29])  -- its life ended: its dedup key is free (or the rerun's)
elseif mode == 'requeue' and ARGV[21] == '1' and dedup_any(d) then
  dedup_unstarted(d, id, KEYS[29])  -- fetched ahead, never started: held until started, its
  -- key again (KEYS[29], the queue of its name and key: a rerun left waiting takes it)
elseif dedup_any(d) then
  dedup_settled(d, id)  -- it ran: the mark of its first fetch goes
end
if mode == 'requeue' and ARGV[21] == '1' then
  unique_unstarted(k, id, tonumber(ARGV[11]))  -- never started: its unique lock again
elseif mode ~= 'drop' then
  unique_settled(k, id)  -- it ran (or ended): the mark of its fetch goes (drop: forget's)
end
if mode == 'drop' then
  if destroyed then
    forget(k, {id}, nil)
  else
    forget(k, {id}, redis_now())
  end
elseif mode == 'retry' or mode == 'later' then
  redis.call('ZADD', target, score, id)
elseif mode == 'requeue' then
  local prio = prio_of(redis.call('HGET', k.prio, id))
  if score == 'head' then
    score = queue_head(target, prio) or '0'
  end
  if score == '0' then
    score = queue_score(redis.call('INCR', KEYS[8]), prio)
  end
  redis.call('ZADD', target, score, id)
  lim_queued(P, id, tonumber(score))
else -- dead or cancelled: the set is bounded by age and size (100 trimmed at most per call;
  -- each pool's requeuer trims the rest)
  redis.call('HDEL', k.recov, id)
  redis.call('ZADD', target, score, id)
  local stale, ends = set_trim_pick(target, ARGV[8], ARGV[7], 100, KEYS[26], id)  -- (not this
  -- job: its re-send finds it here)
  set_trim(k, target, stale, ends, KEYS[26], KEYS[14], ARGV[14])  -- (a parked member: its end too)
end
if mode == 'dead' or mode == 'drop' or mode == 'cancelled' then  -- its life ended
  local outcome = 'failed'
  if mode == 'cancelled' or destroyed then outcome = 'cancelled' end
  wf_end(KEYS[26], id, outcome, ARGV[6])
end
if not (ARGV[23] ~= '0' or freed or mode == 'requeue') then
  return 1  -- nothing free to wake a pool for
elseif KEYS[36] then  -- once: a slot, a partition or a job (requeue) free
  wake_one(KEYS[36], ARGV[9] .. ':', false)
elseif redis.call('SCARD', KEYS[9]) > 0 then
  redis.call('PUBLISH', ARGV[9], mode == 'requeue' and 'requeue' or 'settle')
end
return 1
end

-- the type each of a job's KEYS must have (the done record is SET over any type, listening
-- read with EXISTS/pcall; the target unused by a drop): checked before the first write, so that
-- another type refuses the job instead of raising half-way
local TYPES = {'HLEN', 'HLEN', 'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'GET', 'SCARD', 'ZCARD',
  'HLEN', 'ZCARD', false, false, 'HLEN', 'HLEN', 'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'ZCARD',
  'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', 'ZCARD',
  'ZCARD', 'ZCARD', 'HLEN', 'ZCARD'}
local function wrong_types(keys, mode)
  for at = 1, math.min(#keys, #TYPES) do
    if TYPES[at] and not (at == 10 and mode == 'drop') then
      local checked = redis.pcall(TYPES[at], keys[at])
      if type(checked) == 'table' and checked.err then
        return wrong_key(keys[at], 'nothing settled')
      end
    end
  end
end

-- the hash fields a job's settle HINCRBYs after its first write (lib/types.lua's
-- not_hash_counter): running[name] and its partition's running count; its stats counter and
-- `cancelled` (a cancel request turns it) are read too, and those that are not counters noted in
-- repairs[KEYS[7]] (lib/types.lua's read_stats: settle_one replaces them)
local function unfit_counters(KEYS, ARGV, repairs)
  local stats = {'cancelled'}
  if ARGV[10] ~= '' then
    stats[2] = ARGV[10]
  end
  local bad = not_hash_counter(KEYS[2], {ARGV[2]}, 'nothing settled')
  if not bad then
    bad, repairs[KEYS[7]] = read_stats(KEYS[7], stats, 'nothing settled', repairs[KEYS[7]])
  end
  local p = not bad and redis.pcall('HGET', KEYS[30], ARGV[1])
  if type(p) == 'string' then
    bad = not_hash_counter(KEYS[31], {p}, 'nothing settled')
  end
  return bad
end

-- lib/workflows.lua's wf_unfit for the job's run, when it is a member (one HGET else); `runs`
-- (kept over the jobs of one call): the verdict of the namespace's keys ('') and of each run
local function wf_refusal(wfof, id, runs)
  local run = redis.call('HGET', wfof, id)
  if not run then
    return nil
  end
  if runs[''] == nil then
    runs[''] = wf_unfit(wfof, nil, 'nothing settled') or false
  end
  if runs[run] == nil then
    runs[run] = runs[''] or wf_unfit(wfof, run, 'nothing settled', true) or false
  end
  return runs[run] or nil
end

-- why the job of these KEYS and ARGV cannot be settled (reads only), else nil: a bad argument,
-- too few KEYS, a key of another type, seq or a hash field it HINCRBYs that is not a counter, a
-- key of its workflow run of another type. Sent again, it is refused again (until repaired).
-- (repairs: see settle_one, filled by unfit_counters)
local function refusal(KEYS, ARGV, runs, repairs)
  local bad = invalid(ARGV)
  if not bad and #KEYS < 33 then
    bad = 'errands: settle: ' .. #KEYS .. ' KEYS, 33 at least'
  elseif not bad and (ARGV[21] or '') ~= '' and #KEYS < 35 then
    bad = 'errands: settle: a start to uncount needs KEYS[35], the rate log'
  end
  if bad then
    return bad
  end
  bad = wrong_types(KEYS, ARGV[3]) or not_counter(KEYS[8], 'nothing settled')
    or unfit_counters(KEYS, ARGV, repairs) or wf_refusal(KEYS[26], ARGV[1], runs)
  return bad and bad.err
end

-- a job refused is answered with the reason (a string: nothing of it written), not an error:
-- the caller tells it from 1 and 0 by the reply's type, and one job does not fail the others
if ARGV[1] ~= '{many}' then
  local repairs = {}
  local why = refusal(KEYS, ARGV, {}, repairs)
  if why then
    return why
  end
  return settle_one(KEYS, ARGV, repairs)
end
local n, nk, na = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not (n and nk and na) or n < 0 or nk < 33 or na < 19 or #KEYS ~= n * nk or #ARGV ~= 4 + n * na then
  return 'errands: settle: {many} counts do not fit its KEYS and ARGV'  -- (every job refused)
end
local function slice(t, from, count)
  local part = {}
  for i = 1, count do
    part[i] = t[from + i]
  end
  return part
end
local replies, runs, repairs = {}, {}, {}
for j = 0, n - 1 do  -- every job checked before anything is written
  replies[j + 1] = refusal(slice(KEYS, j * nk, nk), slice(ARGV, 4 + j * na, na), runs, repairs)
    or false
end
for j = 0, n - 1 do
  if not replies[j + 1] then
    replies[j + 1] = settle_one(slice(KEYS, j * nk, nk), slice(ARGV, 4 + j * na, na), repairs)
  end
end
return replies
