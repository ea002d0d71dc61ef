-- ack: finish jobs that succeeded: keep their result record (with a TTL) and history, forget
-- every other field of them. A tombstone remains (see lib/jobstate.lua) unless the result
-- record is kept at least as long (TOMB_MS): it blocks a new enqueue of the id as well, and a
-- tombstone would cost as much memory again. Fenced per attempt: a
-- job whose attempt record is not this pool's attempt (taken back by a reaper, or fetched again
-- since) is left alone, so nothing is decremented or recorded twice. A job whose destroy was
-- requested while it ran keeps no result record, history or tombstone (published `dropped`, as
-- settle.lua and reap.lua end it; counted cancelled, as they count it; a re-send: refused).
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] stats   KEYS[7] idle   KEYS[8] history_data   KEYS[9] checkins
-- KEYS[10] listening   KEYS[11] errors   KEYS[12] cancel requests
-- KEYS[13] attempts   KEYS[14] unique_of_job   KEYS[15] unique   KEYS[16] unique_expiry
-- KEYS[17] ended   KEYS[18] checkpoints   KEYS[19] dedup   KEYS[20] dedup_of_job
-- KEYS[21] workflow_of (see lib/workflows.lua)   KEYS[22] dedup_next   KEYS[23] dedup_reruns
-- KEYS[24] seq   KEYS[25] partitions (HASH id -> partition, see lib/limits.lua)
-- KEYS[26 .. 25+N] the done-record key of each job; then the history-of-name key of each name,
-- then the queue of each name (a waiting dedup rerun goes there when its key's owner is done),
-- then three per name: its partitions running, partition queue, partitions ready
-- ARGV[1] wake channel   ARGV[2] '1' to wake idle pools (a job with a concurrency limit finished;
--         they are also woken when a partition gets a turn again)
-- ARGV[3] events channel   ARGV[4] now ms   ARGV[5] '1' to record history   ARGV[6] N jobs
-- ARGV[7] pool id   ARGV[8] X: the jobs given extras (below)
-- ARGV[9..] two per name (M names): the name, the result TTL ms of its jobs (0 = keep no record)
-- then six per job: id, name index (1-based), result JSON, started ms, attempt, attempt token
-- then four per job given extras (X of them, in the jobs' order): its place in the call (1..N),
--   its result TTL ms, the envelope as JSON for the records ('' = the stored envelope is JSON),
--   the envelope for the history ('' = as for the records; a large job's has its args omitted)
-- Returns {jobs acknowledged, U, the U ids left alone as unfit (a workflow member whose run has a
-- key of another type, a job of a name whose `running` count or of a partition whose running count
-- is not a counter, a job of a name one of whose own keys this call writes holds another type (its
-- history, queue, partitions running, partition queue or partitions ready: lib/ackparts.lua), an
-- entry that names its job otherwise than its fetch did: another name, or the index of another
-- name, so that its in-progress entry is not "<id>:<name>" or its name's keys are another's;
-- nothing of it written, re-sent or not), then the ids refused by the fence (not those of ended
-- jobs: a re-sent call finds its own work done; but a destroyed job's: nothing of it is left)}.
-- A shared key (KEYS[1..25]) of another type fails the call before its first write (stats'
-- `processed` or `cancelled` that is not a counter is replaced: stat_add); so does a bad number
-- (a count unfit for the arguments, over ACK_MAX jobs, a name index off range; a time, TTL,
-- start or attempt not spelt as Redis reads an integer, lib/types.lua's is_int: ' 5', '007',
-- '1e3'; a TTL past MAX_MS; an extra's place out of order or range) or a name listed twice. Reads and writes take one command
-- per 1,000 jobs (the attempts and envelopes read with HMGET, the history written with HSET and
-- ZADD, `running` counted down once per name, the events' listeners read with HMGET, the
-- in-progress entries read with ZMSCORE (or the pool's small set whole with ZRANGE) and removed
-- with ZREM, the jobs' partitions read with HMGET and their slots freed per name: lib/limits.lua's
-- lim_release_all), but for the done record's SET of each job.
-- A job id given twice in one call is acknowledged once, by the first of its entries that
-- passes the fence, whatever their order (an id one of its entries acknowledges is not listed
-- as refused).
--@include events
--@include jobstate
--@include dedup
--@include workflows
--@include limits
--@include types
--@include chunked
--@include ackcheck
--@include ackparts
local B = 25  -- the keys before the done records
local ACK_MAX = 1000  -- jobs per call: lib/jobstate.lua's forget and tombstone unpack() them
local KEYS, ARGV = KEYS, ARGV  -- (locals: read many times a job)
local n, x = tonumber(ARGV[6]), tonumber(ARGV[8])
-- every number checked before the first write (the job count against the arguments and keys;
-- the time, starts and attempts are written verbatim into records and the history's scores)
local names = is_whole(n) and n >= 0 and n <= ACK_MAX and (#KEYS - B - n) / 5
if not (is_whole(names) and is_whole(x) and x >= 0 and x <= n
    and #ARGV == 8 + 2 * names + 6 * n + 4 * x and is_int(ARGV[4])) then
  return redis.error_reply('errands: ack: ' .. tostring(ARGV[6]) .. ' jobs (at most '
    .. ACK_MAX .. ') and ' .. tostring(ARGV[8]) .. ' extras do not fit ' .. #ARGV
    .. ' arguments and ' .. #KEYS .. ' keys, or bad time ' .. tostring(ARGV[4])
    .. ': nothing acknowledged')
end
local J = 9 + 2 * names  -- the first job's place in ARGV, six each (lib/ackcheck.lua)
local bad_arg, qis, ids, name_list, name_of, extra_at, ttl_of = ack_args(n, names, x, J)
if bad_arg then
  return bad_arg
end
-- workflows, listening, partitioned: one EXISTS of the three keys while none exists (the
-- common case), else partitions on its own, then workflow_of while another may exist. The first
-- EXISTS asks for the hashes most calls find absent too (`rare`: whether one of them exists):
-- dedup_of_job, unique_of_job and those forget HDELs but jobs, attempts and errors (which the
-- dead jobs kept hold): priorities, recoveries, checkins, cancel requests, checkpoints. While
-- none does, none is asked again (its HLEN: 0, no type to check), and the three keys are asked
-- again on their own only while one of the ten exists
local workflows, partitioned, listening, rare
do
  local all = redis.call('EXISTS', KEYS[21], KEYS[10], KEYS[25], KEYS[20], KEYS[14], KEYS[4],
    KEYS[5], KEYS[9], KEYS[12], KEYS[18])
  local present = all > 0 and redis.call('EXISTS', KEYS[21], KEYS[10], KEYS[25]) or 0
  rare = all > present  -- (EXISTS counts a key given twice twice: each of the seven's)
  partitioned = present > 0 and redis.call('EXISTS', KEYS[25]) == 1
  workflows = present > (partitioned and 1 or 0) and redis.call('EXISTS', KEYS[21]) == 1
  listening = present > (workflows and 1 or 0) + (partitioned and 1 or 0)
end
local now = ARGV[4]
local history = ARGV[5] == '1'
local k = {jobs = KEYS[1], prio = KEYS[4], errors = KEYS[11], recov = KEYS[5], checkin = KEYS[9],
  cancelreq = KEYS[12], att = KEYS[13], uniqjob = KEYS[14], uniq = KEYS[15], uniqexp = KEYS[16],
  ended = KEYS[17], ckpt = KEYS[18]}
local deduped, wrong_dedup = false, nil
if rare then
  deduped, wrong_dedup = any_field(KEYS[20], 'nothing acknowledged')  -- (lib/types.lua)
end
if wrong_dedup then
  return wrong_dedup
end
local d = deduped and {jobs = KEYS[1], prio = KEYS[4], idle = KEYS[7], wake = ARGV[1],
  dedup = KEYS[19], dedupjob = KEYS[20], next = KEYS[22], reruns = KEYS[23], seq = KEYS[24]}
-- forget's HDEL of the partitions only while some may hold a field of these jobs (an absent
-- key holds none, and nothing but a partition, a workflow or a dedup rerun writes one)
k.part = (partitioned or workflows or deduped) and KEYS[25] or nil
-- a freed partition's turn, a rerun handed its dedup key and a released workflow member each
-- INCR seq after the first write: it must be a counter (only looked at when one may happen)
if partitioned or workflows or deduped then
  local bad = not_counter(KEYS[24], 'nothing acknowledged')
  if bad then
    return bad
  end
end
-- reads before the first write (a key of another type: an error reply naming it, ack_read):
-- each job's attempt record (the fence: lib/ackcheck.lua), then the stored envelope of the jobs
-- that pass it and need one (need: their ids, `ids` itself while each job so far needs one;
-- env_at: job j -> its place in need, but for the jobs before the first that needs none: j + 1,
-- not set)
local bad_att, pass, seen, need, env_at = ack_fence(n, J, ids, extra_at, k.att)
if bad_att then
  return bad_att
end
local unfit = {}  -- (the jobs of a name whose own key holds another type: lib/ackparts.lua)
ack_name_keys(n, names, history, deduped, partitioned, qis, ids, pass, unfit)
-- a workflow member whose run has a key of another type (lib/workflows.lua's wf_unfit, which
-- wf_end would write) is left alone and reported unfit: one such job must not hold the other
-- jobs of the call (its attempt and in-progress entry stay: see docs/reliability.md); a key of
-- the namespace's of another type fails the call. The jobs' runs are read with one HMGET (per
-- 1,000) and handed to wf_end (run_of[j]: job j's run, or false; each job that passes is
-- running, not waiting, so no other job's end in this call changes it)
local run_of = {}
if workflows then
  local bad = wf_unfit(KEYS[21], nil, 'nothing acknowledged')
  if bad then
    return bad
  end
  local runs, at, passing = {}, {}, {}  -- runs: run -> true when unfit (each run checked once)
  for j = 0, n - 1 do
    if pass[j] == true then
      at[#at + 1] = j
      passing[#at] = ids[j + 1]
    end
  end
  local of, bad_of = ack_read(KEYS[21], passing)  -- (workflow_of's type checked)
  if not of then
    return bad_of
  end
  for x, run in ipairs(of) do
    run_of[at[x]] = run
  end
  for j = 0, n - 1 do
    local run = pass[j] == true and run_of[j]
    if run then
      if runs[run] == nil then
        runs[run] = wf_unfit(KEYS[21], run, '', true) ~= nil
      end
      if runs[run] then
        pass[j] = 'unfit'
        unfit[#unfit + 1] = ids[j + 1]
      end
    end
  end
end
-- the same for a job of a partition whose running count is not a counter (lib/ackparts.lua);
-- part_of[j]: the partition of job j that passes
local part_of, run_counts = {}, {}  -- run_counts: name index -> partition -> its count as read
if partitioned then
  local bad = ack_part_unfit(n, names, ids, qis, pass, unfit, part_of, run_counts)
  if bad then
    return bad
  end
end
local stored, bad_jobs = ack_read(k.jobs, need)  -- job j's: stored[env_at[j] or j + 1]
if not stored then
  return bad_jobs
end
-- the keys this call writes, by what it found (the done records are SET over any type; the
-- listening key is read with EXISTS/pcall; attempts, and jobs when an envelope was read, by
-- the reads above; unique and unique_expiry only while some job holds a unique lock): another
-- type fails the call before its first write
local unique = rare and redis.pcall('HLEN', k.uniqjob) or 0
if type(unique) == 'table' then
  return redis.error_reply('WRONGTYPE ' .. k.uniqjob .. ' holds another type: nothing acknowledged')
end
k.unique = unique > 0
-- each key's type (lib/ackcheck.lua ack_types), and forget's hashes found absent; the jobs of a
-- name whose `running` count is not a counter left alone as unfit (lib/ackparts.lua)
local wrong, size, stat_bad, bad_names = ack_types(#need == 0, history, k.unique, deduped,
  workflows, name_list, rare)
if wrong then return wrong end
if bad_names then ack_names_unfit(n, qis, name_of, ids, pass, unfit, bad_names) end
-- the hashes forget HDELs that are absent (HLEN 0) are left out: no write of this call before
-- forget makes one (but a workflow member's release or a dedup rerun's enqueue)
if not (workflows or deduped) then
  k.absent = {}
  for f = 1, #ACK_FORGET do
    local j = ACK_FORGET[f]
    if size[j] == 0 and KEYS[j] ~= KEYS[2] and KEYS[j] ~= KEYS[8] then
      k.absent[KEYS[j]] = true
    end
  end
end
-- the in-progress entries of the jobs that pass, removed after the loop (lib/ackcheck.lua's
-- ack_gone: an entry naming its job otherwise than its fetch did is left alone as unfit)
local gone = ack_gone(n, names, pass, ids, qis, name_of, size[3], unfit)
-- the jobs whose destroy was requested while they ran (nil: no cancel request exists, size[12])
local destroyed, bad_stats  -- (and stats' `cancelled`, which counts them, read: ack_destroyed)
destroyed, bad_stats, stat_bad = ack_destroyed(size[12] > 0 and KEYS[12], ids, KEYS[6], pass, stat_bad)
if bad_stats then return bad_stats end

-- the compact record of a finished attempt (see docs/data-layout.md): envelope, result, began
-- and ended ms, attempt (o: the job's place in ARGV); its id is in its key, status `finished`
local function record(o, job)
  return '{"j":' .. job .. ',"r":' .. ARGV[o + 2] .. ',"b":' .. ARGV[o + 3] .. ',"e":' .. now
    .. ',"a":' .. ARGV[o + 4] .. '}'
end

local freed, nd = false, 0  -- (nd: the jobs that pass destroyed, counted `cancelled`)
local ended_of = {}  -- name index -> the partitions of its jobs that left the running ones
local queue_of = {}
local done, refused, tombs, events = ids, {}, {}, {}  -- (done: `ids` while each job so far passes)
local ran = {}  -- name index -> jobs of it whose running slot goes back
local hist, hist_of, nh = {}, {}, 0  -- history_data field/values (nh); per name index, its
-- score/members (h_qi, h, hn: the name index of the last job with history, its list and length,
-- looked up again only when the name changes: a call's jobs come by name mostly)
local h_qi, h, hn = false, nil, 0
local call = redis.call  -- (a local: a global's field read costs more than a call's setup)
for j = 0, n - 1 do
  local o, e, id, qi = J + j * 6, extra_at[j], ids[j + 1], qis[j]
  if pass[j] == true then
    ran[qi] = (ran[qi] or 0) + 1
    local p = part_of[j]
    if p then  -- its partition's slot, freed after the loop (lim_release_all)
      local ended = ended_of[qi]
      if not ended then
        ended = {count = {}}
        ended_of[qi] = ended
      end
      local count = ended.count
      local c = count[p]
      if c then
        count[p] = c + 1
      else
        ended[#ended + 1], count[p] = p, 1
      end
    end
    if done ~= ids then
      done[#done + 1] = id
    end
    if deduped then
      queue_of[id] = KEYS[B + n + names + qi]
    end
    local env, henv, ttl_s = '', '', ARGV[8 + 2 * qi]  -- (the name's TTL, but an extra's)
    if e then
      env, henv, ttl_s = ARGV[e + 2], ARGV[e + 3], ARGV[e + 1]
    end
    if env == '' then
      env = stored[env_at[j] or j + 1]
    end
    local ttl = ttl_of[ttl_s]
    local dropped = destroyed and destroyed[id]
    if dropped then  -- destroyed: no result record, history or tombstone (settle.lua's drop)
      env, nd = false, nd + 1
    elseif not env or ttl < TOMB_MS then
      tombs[#tombs + 1] = id  -- no result record, or one that goes before a tombstone would
    end
    if env then
      if ttl > 0 then
        -- the history holds this very record: the result record only names its attempt
        -- (trim_history.lua moves the record here before dropping it from the history)
        local shared = history and henv == ''
        call('SET', KEYS[B + 1 + j], shared and ARGV[o + 4] or record(o, env), 'PX',
          ttl_s)  -- (is_int's spelling, as Redis spells the number ttl)
      end
      if history then
        local hk = id .. ':' .. ARGV[o + 4]
        nh = nh + 2
        hist[nh - 1], hist[nh] = hk, record(o, henv == '' and env or henv)
        if qi ~= h_qi then
          h_qi, h = qi, hist_of[qi]
          if not h then
            h = {}
            hist_of[qi] = h
          end
          hn = #h
        end
        h[hn + 1], h[hn + 2] = now, hk
        hn = hn + 2
      end
    end
    if workflows then
      wf_end(KEYS[21], id, dropped and 'cancelled' or 'ok', not dropped and ARGV[o + 2] or nil,
        run_of[j], events)  -- (its members' events before its own, published with them)
    end
    if listening then
      events[#events + 1] = id
      events[id] = '{"event":"' .. (dropped and 'dropped' or 'finished') .. '","id":"' .. id
        .. '","name":"' .. name_of[qi] .. (dropped and '","error":null}' or '"}')
    end
  else
    if done == ids then
      done = {unpack(ids, 1, j)}  -- (the jobs before it)
    end
    if not pass[j] and not seen[id] and not redis.call('ZSCORE', k.ended, id)
        and redis.call('EXISTS', KEYS[B + 1 + j]) == 0 then
      -- (not an id another entry acknowledges; nor an ended job, tombstone or result record: a
      -- re-sent ack)
      refused[#refused + 1] = id
    end
  end
end
if #done > 0 then
  call_chunked('ZREM', KEYS[3], gone)
  for qi, count in pairs(ran) do
    redis.call('HINCRBY', KEYS[2], name_of[qi], -count)
  end
  for qi, e in pairs(ended_of) do
    local b = B + n + 2 * names + 3 * (qi - 1)
    local P = {part = KEYS[25], seq = KEYS[24], prun = KEYS[b + 1], pq = KEYS[b + 2],
      pready = KEYS[b + 3]}
    freed = lim_release_all(P, e, e.count, run_counts[qi]) or freed
  end
  call_chunked('HSET', KEYS[8], hist)
  for qi = 1, names do  -- (one key each: in any order; no iterator call)
    local members = hist_of[qi]
    if members then
      call_chunked('ZADD', KEYS[B + n + qi], members)
    end
  end
  if deduped then
    for _, id in ipairs(done) do
      dedup_ended(d, id, queue_of[id])
    end
  end
  forget(k, done, nil)
  if #tombs > 0 then
    tombstone(k, tombs, redis_now())
  end
  if #done > nd then stat_add(KEYS[6], 'processed', #done - nd, stat_bad) end  -- (lib/types.lua)
  if nd > 0 then stat_add(KEYS[6], 'cancelled', nd, stat_bad) end
  if #events > 0 then
    ev_publish_all(KEYS[10], ARGV[3], events)
  end
  if (ARGV[2] == '1' or freed) and redis.call('SCARD', KEYS[7]) > 0 then
    redis.call('PUBLISH', ARGV[1], 'slot')
  end
end
if #done == 0 and n > 0 then
  -- verdicts read, nothing written (refused; ended already: a re-send whose first send's reply
  -- was lost; unfit): lib/types.lua's unwritten
  unwritten('ZREM', KEYS[3])
end
return ack_reply(#done, unfit, refused)  -- (lib/ackcheck.lua)
