-- enqueue: store one or more jobs and put each on its queue, or in its scheduled set when due later.
-- Idempotent on the job id: a job whose id is stored (waiting, running, dead, cancelled) or
-- ended recently (its tombstone or its result record exists) is not stored again, so a re-sent
-- call (redis-py retries after a timeout) or a repeated job id adds nothing and counts nothing.
-- KEYS[1] jobs (HASH id -> envelope)       KEYS[2] priorities (HASH id -> priority)
-- KEYS[3] seq (counter for FIFO order)     KEYS[4] names (SET of job names)
-- KEYS[5] idle (SET of waiting pools)   KEYS[6] listening (events wanted while it exists)
-- KEYS[7] ended (tombstones)   KEYS[8] partitions (HASH id -> partition)
-- KEYS[9 .. 8+5M] five per distinct job name: queue (ZSET), scheduled (ZSET), partition queue,
--                 partitions ready (see lib/limits.lua), its idle pools (see lib/wake.lua)
-- KEYS[9+5M .. 8+5M+N] the result-record key of each job
-- KEYS[9+5M+N .. 14+5M+N] paused, pools, attempts, attempt counter, running, run-time limits
--           (read, and written when the job is handed off: lib/handoff.lua)
-- KEYS[15+5M+N] workflows (ZSET, the index of runs)   KEYS[16+5M+N] workflow_of (read through
--           lib/wfids.lua: a job whose id is a stored run's member's or callback's is refused)
-- ARGV[1] wake channel   ARGV[2] number of jobs N (at most 5,000)   ARGV[3] events channel
-- ARGV[4] M names   ARGV[5 .. 4+M] the names
-- ARGV[5+M .. 4+M+N] the job ids   ARGV[5+M+N .. 4+M+2N] their envelopes
-- ARGV[5+M+2N .. 4+M+3N] per job "<name index>" (1-based; priority 0, due now, no partition) or
--           "<name index> <priority> <due time in ms, 0 = now> <partition, '' = none>"
-- ARGV[5+M+3N .. 7+M+3N] the prefixes of a pool's in-progress set, hand-off list and arming key
--           (store/keys.py pool_prefixes: the pool id appended; lib/handoff.lua)
-- Returns the (1-based) indices of the jobs found already there (another job with the id is
-- stored, an earlier job of this call has it, the id's job ended recently, or the id is a
-- workflow member's or callback's while its run is stored: lib/wfids.lua); a job stored with
-- this very envelope (this call's own earlier send) is not stored again either, but not listed.
-- Once that job failed an attempt or ended, a re-send cannot tell it from another job's and
-- lists it: its caller is told `existed`, which misleads it into no wrong action (the job was
-- stored once, by the first send; nothing reads `existed` but the application, and
-- docs/enqueueing.md says so).
-- A call that finds every job already there writes nothing but a no-op (HDEL of jobs' field
-- '', not replicated) before it answers, so that a replica (a master demoted by a failover,
-- still answering from its old data) refuses it (READONLY) instead of answering `existed` for
-- jobs the new master may lack; a call that stores a job pays nothing for it.
-- A key holding another type, or a malformed spec, fails the whole call before its first write
-- (a script must not fail half-way), so a caller can re-send the other jobs alone.
-- Reads and writes take one command per 1,000 jobs (HMGET, ZMSCORE, EXISTS; HSET, ZADD), but
-- for the tombstones when ZMSCORE is refused (an ACL rule of an older errands, Redis < 6.2):
-- then one ZSCORE per job; and the new ids holding '.' or '!' (ones a workflow member's could
-- be: lib/wfids.lua): a ZCARD of the runs per call, and while runs are stored one ZMSCORE per
-- 1,000 of the runs they may be members of, then one HMGET per run found (per 1,000 of its
-- nodes asked).
-- Wakes one idle pool serving each name that got a ready job (not every idle pool): the pool
-- that fetches a full batch wakes the next one (fetch.lua). KEYS[5] (every idle pool) is only
-- looked at when the call has several names; a name's idle pools are popped only when its
-- type check counted one. A one-job call of a known name, due now, without priority or
-- partition, while nobody listens and no pool is idle: 9 commands (SISMEMBER, 2 ZCARD, HMGET,
-- ZMSCORE, EXISTS; INCRBY, HSET, ZADD; bench/enqueue_cost.py).
--@include events
--@include prio
--@include wake
--@include types
--@include handoff
-- lib/limits (lim_queued, `which` 'limits'), built only by a call that queues a job with a
-- partition: its ~30 functions and constants cost a one-job call without one about a sixth of
-- its Redis time (bench/README.md: 27.9 -> 23.8 us median); or lib/wfids (wf_ids_taken), only
-- by a call of an id holding '.' or '!'. Both use lib/chunked, included here first: a lib is
-- included once per script (store/luasource.py), and in one of the branches the other would
-- not see it.
local function lib_of(which)
--@include chunked
  if which == 'limits' then
--@include limits
    return lim_queued
  end
--@include wfids
  return wf_ids_taken
end
local n = tonumber(ARGV[2])
local m = tonumber(ARGV[4])
local base = 8 + 5 * m
local CHUNK = 1000
local I, E, S = 4 + m, 4 + m + n, 4 + m + 2 * n  -- ARGV[I + i]: the id of job i, E its envelope
-- before the first write: every job's spec, then the type of each key this call may write or
-- read after its first write (per the specs: a call of jobs due now without priority or
-- partition checks names, and its names' queues and idle pools only). jobs is read first
-- (HMGET, pcall: its wrong type fails as a checked key's does), then ended, and seq's INCRBY is
-- the first write: a wrong type there fails with nothing written; the result records may be of
-- any type. A call of one name asks SISMEMBER of it for the names' type check (no SADD when it
-- is known); the idle pools' ZCARD tells whether there is a pool to wake (no ZPOPMIN when not).
-- specs[i]: job i's name index when its spec is plain (due now, no priority or partition; no table
-- per job), else {name index, priority, due ms, partition}; plain: the name indices of plain specs
local specs, plain = {}, {}
local lim_queued = false  -- (lib_of)
local check = {false, false, false, m > 1 and 'SCARD'}  -- per key index: the read it must accept
local function bad_spec(spec)
  return redis.error_reply('errands: enqueue: bad job spec ' .. tostring(spec) .. ': no job of this call was stored')
end
for i = 1, n do
  local spec = ARGV[S + i]
  local qi = tonumber(spec)
  if qi then
    if not (qi >= 1 and qi <= m and qi == math.floor(qi)) then
      return bad_spec(spec)
    end
    specs[i], plain[qi] = qi, true
  else
    local prio, due, partition
    qi, prio, due, partition = string.match(spec, '^(%d+) (%-?%d+) (%d+) (.*)$')
    qi, prio, due = tonumber(qi), tonumber(prio), tonumber(due)
    if not (qi and qi >= 1 and qi <= m and qi == math.floor(qi) and is_priority(prio)) then
      return bad_spec(spec)
    end
    specs[i] = {qi, prio, due, partition}
    local b = 3 + 5 * qi  -- KEYS[b + 1 .. b + 5]: the name's queue, scheduled, pq, pready, idle
    if prio ~= 0 then
      check[2] = 'HLEN'
    end
    if partition ~= '' then
      check[8] = 'HLEN'
    end
    if due ~= 0 then
      check[b + 2] = 'ZCARD'
    else
      check[b + 1], check[b + 5] = 'ZCARD', 'ZCARD'
      if partition ~= '' then
        check[b + 3], check[b + 4] = 'ZCARD', 'ZCARD'
      end
      if m > 1 then
        check[5] = 'SCARD'
      end
    end
  end
end
for qi in pairs(plain) do
  local b = 3 + 5 * qi
  check[b + 1], check[b + 5] = 'ZCARD', 'ZCARD'
  if m > 1 then
    check[5] = 'SCARD'
  end
end
local OUTCOME = 'no job of this call was stored'
local wrong, counts = wrong_type(function(j)
  return check[j]
end, OUTCOME, base)  -- (not the result records: of any type)
if wrong then
  return wrong
end
local known = false  -- the one name of the call is in names already
if m == 1 then
  known = redis.pcall('SISMEMBER', KEYS[4], ARGV[5])
  if type(known) == 'table' then
    return wrong_key(KEYS[4], OUTCOME)
  end
  known = known == 1
end
-- reads first, per 1,000 jobs: which ids are stored or ended (ZMSCORE refused: not known, asked
-- one by one), whether any of their result records exists, whether anyone listens (asked with
-- the first result records: one EXISTS when none is there); then which jobs are new
local existed, new, seen, listening = {}, {}, {}, false
local n_existed, n_new = 0, 0
local maybe = false  -- a new job's id holds '.' or '!': a workflow member's or callback's may
for s = 1, n, CHUNK do
  local e = math.min(n, s + CHUNK - 1)
  local stored = redis.pcall('HMGET', KEYS[1], unpack(ARGV, I + s, I + e))
  if stored.err then
    return wrong_key(KEYS[1], OUTCOME)
  end
  local ended = redis.pcall('ZMSCORE', KEYS[7], unpack(ARGV, I + s, I + e))
  if ended.err then
    ended = nil
  end
  if not maybe then  -- (the ids joined: one scan a chunk, not two string.find a job)
    local ids = e == s and ARGV[I + s] or table.concat(ARGV, ' ', I + s, I + e)
    maybe = string.find(ids, '.', 1, true) or string.find(ids, '!', 1, true)
  end
  local done = false  -- a result record of this chunk's jobs exists
  if s == 1 then
    local there = redis.call('EXISTS', KEYS[6], unpack(KEYS, base + s, base + e))
    if there > 0 then
      listening = redis.call('EXISTS', KEYS[6]) == 1
      done = there > (listening and 1 or 0)
    end
  else
    done = redis.call('EXISTS', unpack(KEYS, base + s, base + e)) > 0
  end
  for i = s, e do
    local id, got, gone = ARGV[I + i], stored[i - s + 1], false
    if ended then
      gone = ended[i - s + 1]
    elseif not seen[id] and not got then
      gone = redis.call('ZSCORE', KEYS[7], id)
    end
    if seen[id] then  -- an earlier job of this call has the id (also on a re-send)
      n_existed = n_existed + 1
      existed[n_existed] = i
    elseif got then
      if got ~= ARGV[E + i] then
        n_existed = n_existed + 1
        existed[n_existed] = i
      end
    elseif gone or (done and redis.call('EXISTS', KEYS[base + i]) == 1) then
      n_existed = n_existed + 1
      existed[n_existed] = i
    else
      n_new = n_new + 1
      new[n_new] = i
    end
    seen[id] = true
  end
end
-- a new job whose id is a workflow member's or callback's while its run is stored is refused
-- as one taken (lib/wfids.lua, read only, all the call's such ids at once; built by lib_of: a
-- call whose ids hold no '.' or '!', as random ids, builds none of its functions)
if maybe then
  local asked, at = {}, {}  -- the new ids holding '.' or '!', and the job of each
  for _, i in ipairs(new) do
    local id = ARGV[I + i]
    if string.find(id, '.', 1, true) or string.find(id, '!', 1, true) then
      local k = #asked + 1
      asked[k], at[k] = id, i
    end
  end
  local W = base + n + 7  -- KEYS[W] workflows, KEYS[W + 1] workflow_of
  local taken = #asked > 0 and lib_of('wfids')(KEYS[W], KEYS[W + 1], asked, OUTCOME) or {}
  if taken.err then
    return taken
  elseif next(taken) then
    local kept, refused = {}, {}
    for k in pairs(taken) do
      refused[at[k]] = true
    end
    for _, i in ipairs(new) do
      if refused[i] then
        n_existed = n_existed + 1
        existed[n_existed] = i
      else
        kept[#kept + 1] = i
      end
    end
    table.sort(existed)
    new, n_new = kept, #kept
  end
end
if n_new == 0 then
  -- every job found already there (read, nothing written): a write of nothing first (no job's
  -- id is '': store/keys.py; jobs read above as a hash), lib/types.lua's unwritten: a job the
  -- new master lacks (enqueued just before the failover, not yet replicated) may still be in a
  -- demoted master's data, and a re-sent call would be told it was stored. (n = 0: nothing read.)
  if n > 0 then
    unwritten('HDEL', KEYS[1])
  end
  return existed
end
-- a one-job call of a job due now without partition: handed to an idle pool when one takes it
-- (lib/handoff.lua; read only, before the first write)
local ho, h = false, false
local one = specs[1]  -- (a plain spec: its name index)
if n == 1 and m == 1 and (type(one) ~= 'table' or one[3] == 0 and one[4] == '')
    and counts[13] > 0 then
  local X = base + n
  h = {paused = KEYS[X + 1], pools = KEYS[X + 2], att = KEYS[X + 3], seq = KEYS[X + 4],
    running = KEYS[X + 5], rlimits = KEYS[X + 6], name = ARGV[5], ip = ARGV[S + n + 1],
    box = ARGV[S + n + 2], arm = ARGV[S + n + 3], queued = counts[9]}
  ho = ho_plan(KEYS[13], h)
end

local function flush(cmd, key, list, len)  -- list: flat field/value (or score/member) pairs
  for s = 1, len, 2 * CHUNK do
    redis.call(cmd, key, unpack(list, s, math.min(len, s + 2 * CHUNK - 1)))
  end
end

local seq = redis.call('INCRBY', KEYS[3], n_new) - n_new
local envs, prios, parts, queues, named = {}, {}, {}, {}, {}
local ne = 0
local ready = {}
for k = 1, n_new do
  local i = new[k]
  local id = ARGV[I + i]
  local qi, prio, due, partition = specs[i], 0, 0, ''
  if type(qi) == 'table' then
    qi, prio, due, partition = unpack(qi)
  end
  envs[ne + 1], envs[ne + 2] = id, ARGV[E + i]
  ne = ne + 2
  if prio ~= 0 then
    prios[#prios + 1] = id
    prios[#prios + 1] = prio
  end
  named[qi] = true
  if partition ~= '' then
    parts[#parts + 1] = id
    parts[#parts + 1] = partition
  end
  local b = 3 + 5 * qi
  local key, score = KEYS[b + 2], due
  if due == 0 then
    seq = seq + 1
    key, score = KEYS[b + 1], queue_score(seq, prio)
    if partition ~= '' then
      local P = {part = KEYS[8], seq = KEYS[3], pq = KEYS[b + 3], pready = KEYS[b + 4]}
      lim_queued = lim_queued or lib_of('limits')
      lim_queued(P, id, score, partition)
    end
    ready[qi] = true
  end
  if ho then  -- (not queued: handed off below)
    ho.score = score
  else
    local list = queues[key]
    if not list then
      list = {0}  -- list[1]: its length, then score/member pairs
      queues[key] = list
    end
    local len = list[1]
    list[len + 2], list[len + 3] = score, id
    list[1] = len + 2
  end
end
flush('HSET', KEYS[1], envs, ne)
flush('HSET', KEYS[2], prios, #prios)
flush('HSET', KEYS[8], parts, #parts)
for key, list in pairs(queues) do
  for s = 2, list[1] + 1, 2 * CHUNK do
    redis.call('ZADD', key, unpack(list, s, math.min(list[1] + 1, s + 2 * CHUNK - 1)))
  end
end
local fresh = {}  -- the names to add to names
for qi in pairs(named) do
  fresh[#fresh + 1] = ARGV[4 + qi]
end
for s = 1, known and 0 or #fresh, CHUNK do  -- one SADD per 1,000 names
  redis.call('SADD', KEYS[4], unpack(fresh, s, math.min(#fresh, s + CHUNK - 1)))
end
if listening then  -- (one HMGET of the listeners per 1,000 jobs: lib/events.lua)
  local events = {}
  for _, i in ipairs(new) do
    local spec = specs[i]
    local id, name = ARGV[I + i], ARGV[4 + (type(spec) == 'table' and spec[1] or spec)]
    events[#events + 1] = id
    events[id] = '{"event":"enqueued","id":"' .. id .. '","name":"' .. name .. '"}'
  end
  ev_publish_all(KEYS[6], ARGV[3], events)
end
if ho then
  local id = ARGV[I + new[1]]
  ho_give(ho, h, KEYS[13], id, ARGV[E + new[1]], ho.score)
  if listening then
    ev_publish_all(KEYS[6], ARGV[3], {id, [id] = '{"event":"started","id":"' .. id ..
      '","name":"' .. ARGV[5] .. '"}'})
  end
elseif next(ready) and (m == 1 or counts[5] > 0) then
  local now = false
  for qi = 1, m do
    if ready[qi] and counts[8 + 5 * qi] > 0 then  -- an idle pool of the name to wake
      local _, at = wake_one(KEYS[8 + 5 * qi], ARGV[1] .. ':', now)
      now = at
    end
  end
end
return existed
