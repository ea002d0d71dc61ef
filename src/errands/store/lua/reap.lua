-- reap: take the lease of a dead pool and give its in-progress jobs back to their queues exactly
-- once (several reapers may race: only the one whose ZREM succeeds moves a job), return their
-- concurrency slots, and bury a job that has now been taken back from dead pools too often.
-- A dead pool is first retired: removed from the registry (its fetches, heartbeats, acks and
-- check-ins are refused from then on, see fetch.lua and heartbeat.lua) and listed in `retired`
-- until its in-progress set is empty. An in-progress set whose pool is in neither (left by an
-- older version) is retired too. Bounded: the caller passes at most a few hundred entries.
-- KEYS[1] pools   KEYS[2] in_progress of the pool   KEYS[3] its info   KEYS[4] jobs
-- KEYS[5] running   KEYS[6] priorities   KEYS[7] recoveries   KEYS[8] dead   KEYS[9] errors
-- KEYS[10] seq   KEYS[11] idle   KEYS[12] stats   KEYS[13] cancel requests   KEYS[14] cancelled
-- KEYS[15] retired   KEYS[16] attempts   KEYS[17] checkins   KEYS[18] unique_of_job
-- KEYS[19] unique   KEYS[20] unique_expiry   KEYS[21] ended   KEYS[22] checkpoints
-- KEYS[23] dedup   KEYS[24] dedup_of_job   KEYS[25] workflow_of (see lib/workflows.lua)
-- KEYS[26] dedup_next   KEYS[27] dedup_reruns   KEYS[28] history_data   KEYS[29] listening
-- KEYS[30] partitions (see lib/limits.lua)   KEYS[31] the pool's hand-off list (lib/handoff.lua)
-- KEYS[32] quiet requests (its field goes when the pool is retired: admin/pools.py)
-- KEYS[33..] four per job name, referred to by index: its queue, partitions running, partition
-- queue, partitions ready; then the history of each name in the same order
-- ARGV[1] pool id   ARGV[2] dead timeout ms   ARGV[3] max recoveries   ARGV[4] wake channel
-- ARGV[5] error JSON for a buried job   ARGV[6] error JSON for a malformed entry
-- ARGV[7] events channel   ARGV[8] '1' to record history
-- ARGV[9] '0' when this call's entries do not end the caller's read of the set; when they do
--   (it read to the set's end), 1 + the number of entries its earlier calls of that read left
--   alone: only such a call, the set not drained and that read having left an entry alone (in
--   an earlier call or in this one), sets the pool's score in `retired` one dead timeout ahead
--   (below)
-- ARGV[10..] four per entry: in-progress member, job id, job name, name index (1-based); a
--           malformed entry has name '' and index 0 (or the index of the name of the dedup key
--           its job holds, store/reapcall.py: a rerun waiting for the key goes on that name's
--           queue once its key is checked to be that name's): its job is buried
-- An entry whose name's `running` count, or whose partition's running count, is not a counter
-- (written by hand, a bad restore) is left alone: not reaped, nothing written for it (its
-- HINCRBY would raise after the first write), its count left as it is; the other entries are
-- reaped, and the pool stays retired while its set holds it (reaped by a later call once the
-- count is repaired), its score in `retired` set one dead timeout ahead by the call that ends
-- the reaper's read of the set (ARGV[9]): dead_pools.lua lists it again from then, and a pool
-- retired before it is due again is listed before it (such pools neither re-read every pass,
-- nor crowding the others out of its list; not so a pool whose call is refused, below: nothing
-- written, it keeps its old score and is listed first). Its workflow run is not checked (nothing
-- is written for it: it cannot refuse the call), nor, left alone for its name's count, its
-- name's keys and its partition's count (one left alone for its partition's count was found so
-- by reading it from its name's partitions running hash, type-checked with the others).
-- Likewise an entry of a name one of whose own keys (queue, partitions running, partition
-- queue, partitions ready, history) holds another type: left alone, the pool held the same way
-- (a malformed entry of its index too: its job's rerun would go on its queue, dedup_queue).
-- A shared key of another type, or a seq that is not a counter, or a timeout or
-- count that is not a whole number, or an ARGV[9] that is not one >= 0, refuses the call before
-- its first write (the pool keeps its score in `pools` or `retired`): its reply is then
-- the reason, a string ending 'nothing reaped' (store/reapcall.py reads it as ReapRefused;
-- not an error reply, which only its wording told apart from Redis' own errors). A name index
-- out of range is an error (the caller's bug). A recovery count that is not a number is
-- counted anew at 1; so is stats' dead or cancelled (lib/types.lua's stat_add: a statistic does
-- not stop the work it counts), and the reply names it.
-- A job whose cancellation was requested while it ran is cancelled (or destroyed), not requeued.
-- Only this pool's attempts are touched: an entry whose job has another pool's attempt (it runs
-- there; a state no script leaves, but data of an older version may) only frees its slot.
-- Every ending is published (dead, cancelled, dropped for a destroy) and recorded in the
-- history (dead, cancelled; attempt from the envelope, see lib/jobstate.lua). A call that frees
-- a name's running slot (requeued or not) publishes one wake-up ('reap' on ARGV[4]) when a pool
-- is idle.
-- Returns {requeued, buried, 1 if the pool is gone (drained) else 0, cancelled, 1 if the pool
-- is alive (left alone) else 0, then the stats fields replaced (not counters: dead, cancelled),
-- then, only when entries were left alone for their name's count, a list {name, the first 40
-- characters of its count, ...} (once per name), then, only when entries were left alone for
-- their partition's count, that list (empty when none was for its name's) and another: {the
-- entries left alone so, then name, partition, the first 40 characters of its count, ...}
-- (once per partition of a name), then, only when entries were left alone for a key of their
-- name's, those two lists (maybe empty: {} and {0}) and a third: {the entries left alone so,
-- then name, its first key of another type, ...} (once per name; store/reapcall.py)}. A
-- re-sent call (redis-py, after a lost reply) finds the entries gone and counts 0 of each
-- (those left alone: the same again): harmless, the counts only feed the
-- reaper's log line and counters (the first call's work stands; drained is answered as it is
-- now).
--@include events
--@include jobstate
--@include dedup
--@include workflows
--@include limits
--@include types
local Q = 32
local NQ = (#KEYS - Q) / 5  -- names: their queues (with their partition keys), then histories
local pool = ARGV[1]
local now = redis_now()
-- every argument checked before the first write (is_whole: not nan, inf or a fraction; a dead
-- timeout of nan took every live pool for dead)
local timeout = tonumber(ARGV[2])
local E = 10  -- the first entry's place in ARGV
local read_end = tonumber(ARGV[9])
if not (is_whole(timeout) and is_whole(tonumber(ARGV[3])) and is_whole(NQ)
    and is_whole(read_end) and read_end >= 0) then
  return 'errands: reap: bad dead timeout, max recoveries, key count or read end: '
    .. tostring(ARGV[2]) .. ', ' .. tostring(ARGV[3]) .. ', ' .. #KEYS .. ', '
    .. tostring(ARGV[9]) .. ': nothing reaped'
end
for i = E, #ARGV, 4 do
  local qi = tonumber(ARGV[i + 3])
  if not (is_whole(qi) and (qi >= 1 or ARGV[i + 2] == '' and qi == 0) and qi <= NQ) then
    return redis.error_reply('errands: reap: entry ' .. tostring(ARGV[i]) .. ' has name index '
      .. tostring(ARGV[i + 3]))
  end
end
local k = {jobs = KEYS[4], prio = KEYS[6], errors = KEYS[9], recov = KEYS[7], checkin = KEYS[17],
  cancelreq = KEYS[13], att = KEYS[16], uniqjob = KEYS[18], uniq = KEYS[19], uniqexp = KEYS[20],
  ended = KEYS[21], ckpt = KEYS[22], part = KEYS[30], histdata = KEYS[28], listening = KEYS[29],
  events = ARGV[7]}
local history = ARGV[8] == '1'
local partitioned = redis.call('EXISTS', KEYS[30]) == 1
local freed = false  -- a running slot of a name freed (behind its entry's ZREM): idle pools woken
local function limits_of(index)
  local b = Q + 4 * (index - 1)
  return {on = partitioned, part = KEYS[30], seq = KEYS[10], prun = KEYS[b + 2], pq = KEYS[b + 3],
    pready = KEYS[b + 4]}
end
local d = {jobs = KEYS[4], prio = KEYS[6], seq = KEYS[10], idle = KEYS[11], wake = ARGV[4],
  dedup = KEYS[23], dedupjob = KEYS[24], next = KEYS[26], reruns = KEYS[27]}
-- the type of each key (the pool's info is DELeted whatever its type; `listening` is read with
-- EXISTS/pcall; seq must be a counter: a requeue INCRs it after the first write): a running
-- HASH of another type raised in HINCRBY after the job left the in-progress set (lost)
local TYPES = {'ZCARD', 'ZCARD', false, 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', 'HLEN', false,
  'SCARD', 'HLEN', 'HLEN', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', 'ZCARD',
  'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'ZCARD', 'HLEN', false, 'HLEN', false, 'HLEN'}
-- queue, partitions running, pq, pready, history
local PER_NAME = {'ZCARD', 'HLEN', 'ZCARD', 'ZCARD', 'ZCARD'}
-- a name whose `running` count is not a counter is noted in unfit (its entries are left alone)
-- and left (the reply's list: name, value of its count, ..., once per name: lib/types.lua's
-- skipped_list); nothing is written for an entry left alone, so nothing of it is checked
-- either (its name's keys, its partition's count, its workflow run): it cannot refuse the
-- call. used: the name indexes of the other entries
local unfit, left, used = {}, nil, {}
do
  local names, skip = {}, {}
  for i = E, #ARGV, 4 do
    if ARGV[i + 2] ~= '' then
      names[#names + 1] = ARGV[i + 2]
    end
  end
  local got = #names > 0 and redis.pcall('HMGET', KEYS[5], unpack(names)) or {}
  for j = 1, got.err and 0 or #names do  -- (of another type: refused by its type, below)
    if not is_counter(got[j]) and not unfit[names[j]] then
      unfit[names[j]] = string.sub(got[j], 1, 40)
      skip[j] = unfit[names[j]]  -- (at its first entry only)
    end
  end
  left = skipped_list(skip, names)
  for i = E, #ARGV, 4 do
    if not (ARGV[i + 2] ~= '' and unfit[ARGV[i + 2]]) then
      used[tonumber(ARGV[i + 3])] = true
    end
  end
end
local bad = wrong_type(function(j) return TYPES[j] end, 'nothing reaped', Q)
  or not_counter(KEYS[10], 'nothing reaped')
-- a name one of whose own keys (queue, partitions running, pq, pready, history) holds another
-- type: keyed[index] = that key (the first); its entries are left alone like those of a name
-- whose count is not a counter (nothing of them written or checked further), counted in
-- key_left[1] and named after (name, key, ... once per name); so is a malformed entry of its
-- index (its job's rerun would go on its queue: dedup_queue), counted but not named
local keyed, key_left = {}, {0}
for qi = 1, NQ do  -- (used[0]: a malformed entry's, of no name)
  local b = Q + 4 * (qi - 1)
  keyed[qi] = used[qi] and first_unfit({KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4],
    KEYS[Q + 4 * NQ + qi]}, PER_NAME)
end
local named = {}
for i = E, #ARGV, 4 do
  local qi = tonumber(ARGV[i + 3])
  if keyed[qi] and not unfit[ARGV[i + 2]] then
    key_left[1] = key_left[1] + 1
    if not named[qi] and ARGV[i + 2] ~= '' then
      named[qi] = true
      key_left[#key_left + 1], key_left[#key_left + 2] = ARGV[i + 2], keyed[qi]
    end
  end
end
-- the counters this call counts after its first write, checked first (lib/types.lua): a value
-- that is not one raised there after the job had left the in-progress set (lost): `running` of
-- each entry's name (above) and the running count of each entry's partition; stats' dead and
-- cancelled are read too, and those that are not counters noted in stat_bad (stat_add replaces
-- them); an entry whose partition's count is not one is noted in held (ARGV place -> true: left
-- alone) and its partition in parts_left (the reply's second list: how many entries, then name,
-- partition, value, ...)
local stat_bad
local held, parts_left = {}, {0}
-- the partitions of the entries `at` (ARGV places, their ids `ids`) read, their running counts
-- read per name (one HMGET each per 1,000: prun's type checked above): the entries of a
-- partition whose count is not a counter noted in held and parts_left
local function reap_parts_unfit(ids, at)
  local parts, of, unfit_part = read_chunked('HMGET', KEYS[30], ids), {}, {}
  for j = 1, #ids do
    local p, i = parts[j], at[j]
    if p then
      local qi = tonumber(ARGV[i + 3])
      local list = of[qi] or {seen = {}, name = ARGV[i + 2]}
      of[qi] = list
      if not list.seen[p] then
        list.seen[p], list[#list + 1] = true, p
      end
    end
  end
  for qi, list in pairs(of) do
    for x, c in ipairs(read_chunked('HMGET', KEYS[Q + 4 * (qi - 1) + 2], list)) do
      if not is_counter(c) then
        local n, p = #parts_left, list[x]
        unfit_part[qi .. ':' .. p] = true
        parts_left[n + 1], parts_left[n + 2] = list.name, p
        parts_left[n + 3] = string.sub(c, 1, 40)
      end
    end
  end
  for j = 1, #parts_left > 1 and #ids or 0 do
    local i = at[j]
    if parts[j] and unfit_part[tonumber(ARGV[i + 3]) .. ':' .. parts[j]] then
      held[i], parts_left[1] = true, parts_left[1] + 1
    end
  end
end
local function not_reap_counters()
  local ids, at = {}, {}
  for i = E, #ARGV, 4 do
    if ARGV[i + 2] ~= '' and not unfit[ARGV[i + 2]] and not keyed[tonumber(ARGV[i + 3])] then
      ids[#ids + 1], at[#ids + 1] = ARGV[i + 1], i
    end
  end
  local wrong
  wrong, stat_bad = read_stats(KEYS[12], {'dead', 'cancelled'}, 'nothing reaped')
  if not wrong and #ids > 0 and partitioned then
    reap_parts_unfit(ids, at)
  end
  return wrong
end
bad = bad or not_reap_counters()
-- an entry left alone (its name's or its partition's count not a counter): nothing is written
-- for it, so nothing of it is checked from here (it cannot refuse the call)
local function alone(i)
  return ARGV[i + 2] ~= '' and unfit[ARGV[i + 2]] or keyed[tonumber(ARGV[i + 3])] or held[i]
end
local seen = {}  -- (the run of a workflow member: lib/workflows.lua writes its keys; not for an
for i = E, #ARGV, 4 do  -- entry left alone, which nothing is written for: it cannot refuse)
  if not alone(i) then
    bad = bad or wf_unfit_of(KEYS[25], ARGV[i + 1], 'nothing reaped', seen)
  end
end
if bad then  -- (the reason as a string: see the header)
  return (string.gsub(bad.err, '^%-', ''))
end
local deduped = dedup_any(d)  -- (after the type pass: its HLEN raised on another type)
local beat = redis.call('ZSCORE', KEYS[1], pool)
if beat then
  if tonumber(beat) >= now - tonumber(ARGV[2]) then
    return {0, 0, 0, 0, 1}
  end
  redis.call('ZREM', KEYS[1], pool)
  redis.call('ZADD', KEYS[15], now, pool)
  redis.call('DEL', KEYS[3], KEYS[31])  -- (its hand-offs' jobs: in its in-progress set)
  redis.call('SREM', KEYS[11], pool)
  redis.call('HDEL', KEYS[32], pool)
elseif not redis.call('ZSCORE', KEYS[15], pool) then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return {0, 0, 1, 0, 0}
  end
  redis.call('ZADD', KEYS[15], now, pool)
end
local requeued, buried, cancelled, replaced = 0, 0, 0, {}  -- (replaced: stats fields)
local wf_evs = {}  -- the events of the members its ends release or end: published at its end
local function bury(id, err, queue, name, qi)
  if name ~= '' then
    record_end(k, KEYS[Q + 4 * NQ + qi], id, name, 'dead', redis.call('HGET', k.jobs, id), err, now,
      history, ',"error":' .. err)
  end
  if deduped then
    dedup_ended(d, id, queue)
  end
  redis.call('HDEL', k.recov, id)
  redis.call('HSET', k.errors, id, err)
  redis.call('ZADD', KEYS[8], now, id)
  if stat_add(KEYS[12], 'dead', 1, stat_bad) then
    replaced[#replaced + 1] = 'dead'
  end
  buried = buried + 1
  wf_end(KEYS[25], id, 'failed', err, nil, wf_evs)
end
-- job `id` of this dead pool's entry (its slot already freed) goes back to its queue, or ends
local function take_back(id, name, qi, queue, attempt)
  if attempt then redis.call('HDEL', k.att, id) end
  redis.call('HDEL', k.checkin, id)
  unique_settled(k, id)  -- (it may have started: no unique lock again, lib/jobstate.lua)
  local request = redis.call('HGET', k.cancelreq, id)
  local exists = redis.call('HEXISTS', k.jobs, id) == 1
  if deduped and (not exists or request) then
    dedup_ended(d, id, queue)  -- gone or cancelled: its dedup key is free
  end
  if not exists then
    forget(k, {id}, now)
    wf_end(KEYS[25], id, 'cancelled', nil, nil, wf_evs)
  elseif request then
    cancelled = cancelled + 1
    if stat_add(KEYS[12], 'cancelled', 1, stat_bad) then  -- (a destroy too, as settle.lua)
      replaced[#replaced + 1] = 'cancelled'
    end
    if request == 'destroy' then
      forget(k, {id}, nil)
      if name ~= '' then
        record_end(k, nil, id, name, 'dropped', nil, nil, now, false, ',"error":null')
      end
    else
      if name ~= '' then
        record_end(k, KEYS[Q + 4 * NQ + qi], id, name, 'cancelled', redis.call('HGET', k.jobs, id),
          nil, now, history, '')
      end
      redis.call('HDEL', k.cancelreq, id)
      redis.call('HDEL', k.recov, id)
      redis.call('ZADD', KEYS[14], now, id)
    end
    wf_end(KEYS[25], id, 'cancelled', nil, nil, wf_evs)
  elseif name == '' then
    bury(id, ARGV[6], queue, '', 0)
  else
    local n = redis.pcall('HINCRBY', k.recov, id, 1)
    if type(n) ~= 'number' then  -- (a count not a number, written by hand: counted anew, as
      n = 1                      -- fetch.lua reads it: none before; raising here lost the job)
      redis.call('HSET', k.recov, id, n)
    end
    if n >= tonumber(ARGV[3]) then
      bury(id, ARGV[5], queue, name, qi)
    else
      local seq = redis.call('INCR', KEYS[10])
      local prio = prio_of(redis.call('HGET', k.prio, id))
      if deduped then dedup_settled(d, id) end  -- (it may have started: no key, lib/dedup.lua)
      redis.call('ZADD', KEYS[Q + 4 * qi - 3], queue_score(seq, prio), id)
      lim_queued(limits_of(qi), id, queue_score(seq, prio))
      requeued = requeued + 1
    end
  end
end
-- the queue of a malformed entry's job (index qi), for the rerun waiting for the dedup key it
-- holds (lib/dedup.lua): only when that key is of the queue's job name (store/reapcall.py read
-- it before this call); else none, and the rerun waits for the next enqueue of its key
local function dedup_queue(id, qi)
  local v = qi > 0 and deduped and redis.call('HGET', d.dedupjob, id)
  local of = v and string.match(v, '^.([^:]+):')  -- (mode letter, "<job name>:<key>")
  local pre = string.sub(d.dedup, 1, #d.dedup - 5)  -- "<prefix>dedup" (as lib/dedup.lua)
  if of and KEYS[Q + 4 * qi - 3] == pre .. 'q:' .. of then
    return KEYS[Q + 4 * qi - 3]
  end
  return nil
end
for i = E, #ARGV, 4 do
  local id, name, qi = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local queue = name ~= '' and KEYS[Q + 4 * qi - 3] or dedup_queue(id, qi)
  if not alone(i) and redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    if name ~= '' then
      redis.call('HINCRBY', KEYS[5], name, -1)
      lim_release(limits_of(qi), id)
      freed = true
    end
    -- a job whose attempt is another pool's runs there (a state no script leaves; data of an
    -- older version): it is that attempt's to end, and only this entry (with its slot) goes
    local attempt = redis.call('HGET', k.att, id)
    if not attempt or string.sub(attempt, 1, #pool + 1) == pool .. ':' then
      take_back(id, name, qi, queue, attempt)
    end
  end
end
if #wf_evs > 0 then
  ev_publish_all(KEYS[29], ARGV[7], wf_evs)  -- (one HMGET of listening per 1,000)
end
-- one wake a call when it freed a running slot (a job requeued, buried, cancelled or gone: a
-- capped name's idle pool got no wait from its fetch, and slept its poll interval when only a
-- requeue or a partition's turn woke it); a re-send frees nothing and publishes nothing
if freed and redis.call('SCARD', KEYS[11]) > 0 then
  redis.call('PUBLISH', ARGV[4], 'reap')
end
local removed = 0
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[15], pool)
  removed = 1
elseif read_end > 1 or read_end == 1 and (#left > 0 or #parts_left > 1 or key_left[1] > 0) then
  -- the set read to its end and not drained, and the read left entries alone: held by them,
  -- listed again one dead timeout from now (dead_pools.lua; a re-send: later still). Not in an
  -- earlier call of the pass: if the pass stopped after it (a Redis error, a reaper stopped, a
  -- later call refused) the entries it had not read yet waited a dead timeout for nothing; nor
  -- when the read left nothing alone (the set holds entries added since the caller read it: a
  -- dead timeout of another reaper, a clock step), which the next pass reads
  redis.call('ZADD', KEYS[15], now + timeout, pool)
end
local reply = {requeued, buried, removed, cancelled, 0}
for r = 1, #replaced do
  reply[5 + r] = replaced[r]
end
if #left > 0 or #parts_left > 1 or key_left[1] > 0 then
  reply[#reply + 1] = left
end
if #parts_left > 1 or key_left[1] > 0 then
  reply[#reply + 1] = parts_left
end
if key_left[1] > 0 then
  reply[#reply + 1] = key_left
end
return reply
