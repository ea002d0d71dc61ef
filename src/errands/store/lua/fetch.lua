-- fetch: move up to a batch of ready jobs into a pool's in-progress set, atomically honouring
-- paused job names and max_concurrency across every pool sharing the namespace.
-- Fenced by the pool's lease: a pool no longer registered (reaped) gets nothing, nor does one
-- whose last heartbeat is older than the dead timeout (it cannot prove it is alive).
-- Each job fetched gets an attempt record "<pool>:<token>" (one token per call): acks, settles
-- and check-ins of the job are fenced on it. A call serving a job name with a rate records in
-- its token the Redis ms it counted its jobs' starts at ("<n>@<ms>"): a give-back uncounts the
-- start at that time (settle.lua ARGV[21]), whatever the client's clock. A queue entry whose
-- job has an attempt running already (a duplicate) is dropped: no counter taken twice for it.
-- Bounded: at most 8 x (batch + 64) queue entries are looked at per queue.
-- KEYS[1] jobs   KEYS[2] running (HASH name -> count)   KEYS[3] in_progress of this pool
-- KEYS[4] paused (SET)   KEYS[5] idle (SET)   KEYS[6] unique (HASH digest -> id)
-- KEYS[7] unique_of_job (HASH id -> digest)   KEYS[8] unique_expiry (ZSET)   KEYS[9] listening
-- KEYS[10] recoveries (HASH id -> times taken back from dead pools)   KEYS[11] pools
-- KEYS[12] attempts (HASH id -> pool:token)   KEYS[13] attempt counter
-- KEYS[14] partitions (HASH id -> partition)   KEYS[15] seq (counter for partition turns)
-- KEYS[16] dedup   KEYS[17] dedup_of_job   KEYS[18] pscan (HASH job name -> queue score
--         where the scan past partitioned entries goes on)
-- KEYS[19..] eight per job name, in the order to try them: its queue, partition queue,
--            partitions ready, partitions waiting, partitions running, rate log, rate expiry,
--            its idle pools (lib/wake.lua)
-- ARGV[1] pool id   ARGV[2] now ms   ARGV[3] batch size   ARGV[4] events channel
-- ARGV[5] isolation threshold (0 = off): a job taken back from dead pools this many times is a
--         suspect, and a pool runs at most one suspect at a time. The job that kills its worker
--         then no longer takes the same neighbours down with it each time, so they do not end
--         up buried as poison with it. A suspect not taken stays queued at its place; one with a
--         partition stays its partition's head, the partition keeping its turn (lib/limserve).
-- ARGV[6] suspects this pool runs now   ARGV[7] dead timeout ms   ARGV[8] wake channel
-- ARGV[9] ms an idle registration lasts (the pool fetches again well within it while idle)
-- ARGV[10..] three per queue: job name, max_concurrency (0 = no limit), limits spec ('' = none;
--           see lib/limits.lua and limits/spec.py)
-- ARGV[10 + 3 x queues] when the pool takes hand-offs (it blocks on its list: lib/handoff), the
--   oldest beat (ms ago) it takes one with, else 0; with KEYS[19 + 8 x queues] its arming key
-- Limits: rates are checked on the Redis clock; jobs with a partition are served partition by
-- partition in turn (lib/limits.lua), those without after them. A job a limit holds back stays
-- queued (no attempt, nothing rescheduled).
-- A malformed limits spec or a shared key of another type (lib/fetchcheck.lua) fails the call
-- before its first write. A name whose `running` count is not a counter, or one of whose own
-- keys (KEYS[19..]) holds another type, is skipped (fetch_types): nothing of it is fetched or
-- written; the other names are served. A partition whose running count is not one is passed
-- over, once a call (lib/limits.lua's lim_bad_count). A name whose max_concurrency the call
-- fills answers no wait of its rates: nothing of it starts before a job of it ends (its ack
-- wakes the idle pools). Returns {status, token, wait, now, then five per job: queue index
-- (1-based), job id, envelope, queue score, 1 if a suspect, then, only when a name was skipped
-- or a partition passed over, a list: {name, its count's value or {its key of another type},
-- ... (skipped_list), then, if a partition was passed over, {name, partition, its count's
-- value, ...}}; status 0 = ok, -1 = lease lost (not registered), -2 = lease expired (then only
-- the first three); wait = ms until a name's rates that held a job back all let one start (-1 =
-- none); now = the Redis ms the jobs' starts were counted at in their rates (a job given back
-- unstarted is uncounted with it: settle.lua ARGV[21]).
-- -1 and -2 are read, and written nothing first (lib/types.lua unwritten, on pools, ZSCORE read
-- it), so that a demoted master refuses them where the new master may hold the lease (a pool
-- told -1 abandons its jobs); every other reply but an error follows a write (idle marks: below).
-- Marks the pool idle when it got fewer jobs than asked for: in the idle SET (broadcast
-- wake-ups) and in the idle ZSET of each of its names (wake-ups of one pool, and hand-offs of
-- the names without limits when it takes them; when it was not there yet, the expired marks
-- are dropped; lib/fetchmarks.lua; not of a skipped name: its mark goes). A fetch that got all
-- it asked for takes the marks away and, while some pool is idle, wakes one idle pool of the
-- first name not skipped whose queue still holds jobs (an enqueue wakes one pool per name: a
-- burst is spread by this chain).
--@include events
--@include jobstate
--@include limits
--@include dedup
--@include wake
--@include types
--@include chunked
--@include fetchcheck
--@include fetchmarks
local K = 18
local Q = 8
local pool = ARGV[1]
local nq = math.floor((#KEYS - K) / Q)
local armed = KEYS[K + nq * Q + 1]  -- (lib/handoff.lua: the hand-off a mark allows)
-- before the first write: every number a whole finite number (is_whole: not 'inf'; the time,
-- the in-progress entries' score, spelt as Redis reads one: lib/types.lua's is_int, not ' 5'),
-- every limits spec well formed, every key this call may touch of its type (or absent)
if not is_int(ARGV[2]) then
  return redis.error_reply('errands: fetch: ARGV[2] is not a whole number: nothing fetched')
end
-- (want, isolate, suspects, dead timeout: each read once, lib/types.lua's whole_of)
local want, isolate, suspects = whole_of(ARGV[3]), whole_of(ARGV[5]), whole_of(ARGV[6])
local dead_ms = whole_of(ARGV[7])
do  -- (the first of 3, 5, 6, 7, 9 that is not)
  local j = not want and 3 or not isolate and 5 or not suspects and 6 or not dead_ms and 7
    or not whole_of(ARGV[9]) and 9
  if j then
    return redis.error_reply('errands: fetch: ARGV[' .. j .. '] is not a whole number: '
      .. 'nothing fetched')
  end
end
local specs, limits = {}, {}  -- queue i -> its limits spec (lib/limits.lua), max_concurrency
local rated = {}  -- queue i -> whether its job name has a rate (its rate log and expiry); .any
for i = 1, nq do
  limits[i] = whole_of(ARGV[8 + 3 * i])
  if not limits[i] then
    return redis.error_reply('errands: fetch: max_concurrency of ' .. ARGV[7 + 3 * i] ..
      ' is not a whole number: nothing fetched')
  end
  local L, why = lim_spec(ARGV[9 + 3 * i])
  if not L then
    return redis.error_reply('ERR ' .. why .. ' for ' .. ARGV[7 + 3 * i] .. ': nothing fetched')
  end
  specs[i], rated[i] = L, #L.r + #L.R > 0
  rated.any = rated.any or rated[i]
end
-- what the call finds in dedup_of_job, unique_of_job, partitions and listening, each key's type
-- checked as it is read (lib/fetchcheck.lua; another type: an error reply after the lease's)
local partitioned, others, deduped, unique, wrong_found = fetch_found('nothing fetched')
-- (the keys of a unique lock's release and a dedup key's start: only when some job may need them)
local k = unique and {uniq = KEYS[6], uniqjob = KEYS[7], uniqexp = KEYS[8]}
local d = deduped and {dedup = KEYS[16], dedupjob = KEYS[17]}
local beat = redis.pcall('ZSCORE', KEYS[11], pool)
if type(beat) == 'table' then  -- (pools of another type)
  return wrong_key(KEYS[11], 'nothing fetched')
end
if not beat then
  return unwritten('ZREM', KEYS[11], {-1, '', -1})
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(beat) > dead_ms then
  return unwritten('ZREM', KEYS[11], {-2, '', -1})
end
local names = {}
for i = 1, nq do
  names[i] = ARGV[7 + 3 * i]
end
local wrong, sizes, paused_of, skip = fetch_types(K, Q, nq, unique, partitioned, deduped, rated,
  wrong_found, names, isolate > 0)
if wrong then
  return wrong
end
local out = {0, '', -1, now}
local token = false
local waits = fetch_waits()  -- (lib/fetchmarks.lua: a name's waits, its type-wide rates' first)
local note = waits.note
local listening = others and redis.call('EXISTS', KEYS[9]) == 1
local started = {}  -- job id -> its started event, published at the end (lib/events.lua)
local bad_parts = {}  -- partitions passed over: {name, partition, count, ...} (lim_bad_count)
if isolate > 0 and sizes[10] == 0 then  -- (recoveries' HLEN, by fetch_types)
  isolate = 0
end

-- the attempt records and in-progress entries of the jobs taken, written by flush_taken() with
-- one HSET and one ZADD per 1,000 (before anything reads them again)
local taken_att, taken_run, nt = {}, {}, 0  -- (nt: the length of each)
local function flush_taken()
  call_chunked('HSET', KEYS[12], taken_att)
  call_chunked('ZADD', KEYS[3], taken_run)
  taken_att, taken_run, nt = {}, {}, 0
end

-- take job `id` (its envelope `env`, popped with `score`) from queue i into this pool (its
-- attempt record and in-progress entry pending until flush_taken()); attempt: the attempt
-- record, the same for every job of the call; no: the length of `out`
local attempt, no = false, #out
local since = ARGV[2]
local function take(i, name, id, env, score, suspect)
  if not token then
    token = tostring(redis.call('INCR', KEYS[13])) .. (rated.any and ('@' .. now) or '')
    out[2], attempt = token, pool .. ':' .. token
  end
  taken_att[nt + 1], taken_att[nt + 2] = id, attempt
  taken_run[nt + 1], taken_run[nt + 2] = since, id .. ':' .. name
  nt = nt + 2
  out[no + 1], out[no + 2], out[no + 3], out[no + 4], out[no + 5] = i, id, env, score, suspect
  no = no + 5
  if listening then
    started[#started + 1] = id
    started[id] = '{"event":"started","id":"' .. id .. '","name":"' .. name .. '"}'
  end
  if unique then
    unique_started(k, id)  -- a unique job's lock goes when it starts (marked: jobstate)
  end
  if deduped then
    dedup_started(d, id)
  end
end

-- with isolation on: how many times each job of `ids` was taken back from dead pools (one HMGET
-- of recoveries per 1,000, by look() and runnable_all() for the jobs they may take), for
-- suspect_of(); nothing read when isolation is off
local recovered = {}
local function read_recoveries(ids)
  if isolate > 0 then
    for j, times in ipairs(read_chunked('HMGET', KEYS[10], ids)) do
      recovered[ids[j]] = times
    end
  end
end

-- is job `id` (suspect or not) to be taken now by this pool (its recoveries read before; a count
-- that is not a number, written by hand, counts as none: it failed every fetch that met it)
local function suspect_of(id)
  if isolate > 0 and (tonumber(recovered[id] or '0') or 0) >= isolate then
    return 1
  end
  return 0
end

-- of each queue entry of `ids` (distinct), whether it is worth running: its envelope when it
-- exists and no attempt of it runs anywhere, else false. One HMGET each of envelopes and
-- attempts (and recoveries, with isolation on), after the jobs taken so far are written (their
-- attempts read).
-- With isolation on, a suspect is answered false too, its envelope in iso.envs: lim_serve takes
-- it only while the pool runs none (iso.free), else keeps it queued in place (lib/limserve.lua).
local iso = isolate > 0 and {envs = {}} or nil
local function runnable_all(ids)
  flush_taken()
  local envs, atts = read_chunked('HMGET', KEYS[1], ids), read_chunked('HMGET', KEYS[12], ids)
  for j = 1, #ids do
    envs[j] = not atts[j] and envs[j]
  end
  read_recoveries(ids)  -- (with isolation on only)
  if isolate > 0 then
    for j = 1, #ids do
      if envs[j] and suspect_of(ids[j]) == 1 then
        iso.envs[ids[j]], envs[j] = envs[j], false
      end
    end
  end
  return envs
end

for i = 1, nq do
  if want <= 0 then break end
  local b = K + (i - 1) * Q
  local q = KEYS[b + 1]
  local name = ARGV[7 + 3 * i]
  local limit = limits[i]
  local spec = ARGV[9 + 3 * i]
  if not (skip and skip[i]) and (paused_of[i] or redis.call('SISMEMBER', KEYS[4], name)) == 0 then
    -- (cap: the slots max_concurrency leaves, false without one)
    local cap = limit > 0 and limit - tonumber(redis.call('HGET', KEYS[2], name) or '0')
    local room = cap and math.min(want, cap) or want
    local got = 0
    local P, L, per = false, false, 0
    if spec ~= '' or partitioned then
      P = {part = KEYS[14], seq = KEYS[15], q = q, pq = KEYS[b + 2], pready = KEYS[b + 3],
        pwait = KEYS[b + 4], prun = KEYS[b + 5], prate = KEYS[b + 6], prexp = KEYS[b + 7],
        on = partitioned, known = partitioned and i == 1 and {sizes[b + 3], sizes[b + 4]},
        name = name, bad = bad_parts}
      L = specs[i]
      if room > 0 and #L.r > 0 then
        room = lim_type_room(P, L, room, now, waits.full)
      end
      if room > 0 and partitioned then
        if iso then
          iso.free, iso.held = suspects == 0, {}
        end
        got, per = lim_serve(P, L, room, now, runnable_all, function(id, env, score)
          local suspect = isolate > 0 and suspect_of(id) or 0
          take(i, name, id, env, score, suspect)
          suspects = suspects + suspect
        end, note, iso)
        flush_taken()
      end
    end
    -- look at one window of queue entries (id, score, ...): take the runnable ones (a suspect
    -- only while this pool runs none), drop the entries of vanished or running jobs, leave the
    -- rest in place (partitioned ones are served in their partition's turn: lim_serve).
    -- Returns how many it left in place, whether one of them has a partition, and the score
    -- of the last entry it looked at.
    local function look(window)
      local nd, kept, parted, last = 0, 0, false, false
      local ids = {}
      for j = 1, #window, 2 do
        ids[(j + 1) / 2] = window[j]
      end
      -- drop: the entries to remove from the queue; `ids` itself while each entry looked at so
      -- far is one (copied at the first kept in place: the entries of a window are mostly taken)
      local drop = ids
      -- one HMGET each for the window's partitions, envelopes, attempts and recoveries (entries
      -- are distinct ids; what this window takes is written by flush_taken() before the next
      -- reads)
      local parts = partitioned and read_chunked('HMGET', KEYS[14], ids) or {}
      local envs = read_chunked('HMGET', KEYS[1], ids)
      local atts = read_chunked('HMGET', KEYS[12], ids)
      read_recoveries(ids)
      for j = 1, #window, 2 do
        if got >= room then break end
        local x = (j + 1) / 2
        local id = window[j]
        last = window[j + 1]
        local by_partition = parts[x]
        local env = not by_partition and not atts[x] and envs[x]
        if by_partition then
          kept, parted = kept + 1, true
          drop = drop == ids and leading(ids, nd) or drop
        elseif not env then
          nd = nd + 1
          if drop ~= ids then
            drop[nd] = id
          end
        else
          local suspect = isolate > 0 and suspect_of(id) or 0
          if suspect == 0 or suspects == 0 then
            nd = nd + 1
            if drop ~= ids then
              drop[nd] = id
            end
            take(i, name, id, env, window[j + 1], suspect)
            got = got + 1
            suspects = suspects + suspect
          else
            kept = kept + 1
            drop = drop == ids and leading(ids, nd) or drop
          end
        end
      end
      flush_taken()
      if drop == ids and nd < #ids then  -- (the loop stopped early: the entries looked at)
        drop = leading(ids, nd)
      end
      call_chunked('ZREM', q, drop)
      return kept, parted, last
    end
    local function window_size()
      return (isolate > 0) and (room - got + 64) or (room - got)
    end
    -- the head of the queue: at most room (+ 64 with suspects about) entries at a time, 4 times
    local offset, parted, last, ended = 0, false, false, false
    for _ = 1, 4 do
      if got >= room then break end
      local size = window_size()
      local head = redis.call('ZRANGE', q, offset, offset + size - 1, 'WITHSCORES')
      local kept, p, l = look(head)
      offset, parted, last = offset + kept, parted or p, l or last
      if #head < 2 * size then
        ended = true
        break
      end
    end
    -- past a head of partitioned entries (their partitions may all be blocked), the scan goes
    -- on from where the last fetch's scan stopped (pscan), 4 windows a call, back to the head
    -- once at the end: an unpartitioned job behind n such entries is found within about
    -- n / (4 x room) fetches, and the pool is told to come back at once while one may be there
    if partitioned and (ended or (got < room and parted)) then  -- (else nothing to do)
      local from = fetch_cursor(KEYS[18], name)  -- (lib/fetchcheck.lua)
      if got < room and parted and not ended then
        if not from or tonumber(from) < tonumber(last) then
          from = last
        end
        for _ = 1, 4 do
          if got >= room then break end
          local size = window_size()
          local win = redis.call('ZRANGEBYSCORE', q, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', 0,
            size)
          local _, _, l = look(win)
          from = l or from
          if #win < 2 * size and got < room then
            from = false  -- the end
            break
          end
        end
        if from then
          redis.call('HSET', KEYS[18], name, from)
          if redis.call('ZCARD', q) > redis.call('ZCARD', P.pq) then
            note(now + 1)  -- more entries than partitioned ones: one may be runnable
          end
        else
          redis.call('HDEL', KEYS[18], name)
        end
      elseif from and ended then
        redis.call('HDEL', KEYS[18], name)
      end
    end
    if got > 0 then
      redis.call('HINCRBY', KEYS[2], name, got)
      want = want - got
      if L and #L.r > 0 then
        per = math.max(per, lim_type_started(P, L, got, now))
        if got >= room then
          -- took all the rates allowed: a rate these starts filled says when it frees, as one
          -- found full does (the logs just written, read from LIM_SEEN: no command)
          lim_type_room(P, L, 1, now, waits.full)
        end
      end
    end
    if per > 0 then
      lim_tidy(P, per, now)
    end
    if cap and got >= cap then waits.capped() end  -- (its rates' frees: wake-ups for nothing)
  end
  waits.done()
end
if #started > 0 then
  ev_publish_all(KEYS[9], ARGV[4], started)
end
if waits.ms then
  out[3] = math.max(1, waits.ms - now)
end
fetch_marks(K, Q, nq, pool, now, want, sizes, token, armed, skip)
if skip or bad_parts[1] then  -- (lib/types.lua; then lib/limits.lua's lim_bad_count's list)
  local list = skip and skipped_list(skip, names) or {}
  out[no + 1], list[#list + 1] = list, bad_parts[1] and bad_parts or nil
end
return out
