-- enqueue_dedup: store a job unless its dedup key is held (lib/dedup.lua, docs/dedup.md), and
-- say what happened. A re-sent call (redis-py, after a lost reply) answers as its first: one
-- that stored its job finds it (idempotent on the job id as enqueue.lua); one that gave its
-- envelope to another job ('replaced', 'rerun_queued') answers from KEYS[21], before anything
-- else and writing nothing (that job may have started since: the key then looked free, or the
-- holder running, and a re-send stored the same args again, which ran twice).
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] seq   KEYS[4] names
-- KEYS[5] idle pools of the job name (lib/wake.lua: a queued job wakes one of them)
-- KEYS[6] queue of the job name   KEYS[7] scheduled set of the job name   KEYS[8] listening
-- KEYS[9] ended (tombstones)   KEYS[10] the job's result-record key   KEYS[11] dedup
-- KEYS[12] dedup_of_job   KEYS[13] the throttle window of the dedup key   KEYS[14] dedup_next
-- KEYS[15] dedup_reruns   KEYS[16] partitions   KEYS[17] partition queue of the job name
-- KEYS[18] partitions ready of the job name (see lib/limits.lua)   KEYS[19] workflows (ZSET,
-- the index of runs)   KEYS[20] workflow_of (read through lib/wfids.lua: a job whose id is a
-- stored run's member's or callback's is refused as one taken)   KEYS[21] the reply key of
-- this call (optional; store/keys.py reply, a token per call, not the job id, which a caller
-- may give again): a 'replaced' or 'rerun_queued' answer is kept there 2 minutes (REPLY_MS of
-- lib/types.lua, which says why)   KEYS[22] partitions waiting of the job name (optional,
-- after KEYS[21]): a queued job a debounce pushes back, or that leaves its partition (for the
-- request's, or none), takes the partition's turn and rate wait with it when none of the
-- partition's jobs is left indexed (lib/dedup.lua dedup_unindex)
-- ARGV[1] wake channel   ARGV[2] name   ARGV[3] id   ARGV[4] envelope   ARGV[5] priority
-- ARGV[6] due ms (0 = now)   ARGV[7] mode (s d f r t)   ARGV[8] dedup key
-- ARGV[9] window ms (t: at least 1)   ARGV[10] events channel   ARGV[11] partition ('' =
--         none). The job that carries the request has the request's partition (a waiting job
--         or rerun that took its envelope too), indexed as enqueue.lua does once queued.
-- Returns {outcome, id of the job that carries the request, id of the job holding the key}:
-- {'enqueued', id, id} (stored; also for a re-sent call that finds this very job stored),
-- {'existed', id, ''} (the id is taken by another job, ended recently or is a workflow
-- member's or callback's while its run is stored, lib/wfids.lua: nothing stored),
-- {'dropped', holder, holder}, {'replaced', holder, holder} (the waiting holder took this
-- envelope), {'rerun_queued', rerun, holder} (the rerun waiting for the running holder, new
-- or existing, took this envelope). A job stored by the call (a new rerun too, which waits for
-- the holder) publishes its `enqueued` event (lib/events.lua).
-- The answers read and not written ('existed', 'dropped', and a re-sent call's answers) write
-- nothing but a no-op (HDEL of jobs' field '', not
-- replicated) first, so that a replica (a master demoted by a failover, still answering from
-- its old data) refuses the call (READONLY) instead of giving them for a job or a key the new
-- master may not hold; a call that stores or replaces pays nothing for it.
-- A bad argument (mode, priority, due time, a throttle window under 1 ms), a key of another
-- type, a seq that is not a counter or a reply key holding no answer of this script fails the
-- call before its first write.
--@include events
--@include dedup
--@include limits
--@include types
local id, mode, key = ARGV[3], ARGV[7], ARGV[8]
local function refuse(what, value)
  return redis.error_reply('errands: enqueue_dedup: ' .. what .. ', got ' .. tostring(value))
end
if not string.find('sdfrt', mode, 1, true) or #mode ~= 1 then
  return refuse('mode must be one of s d f r t', mode)
end
local prio, due = tonumber(ARGV[5]), tonumber(ARGV[6])
if not is_priority(prio) then
  return refuse('priority must be an integer in -1000..1000', ARGV[5])
end
if not is_whole(due) then
  return refuse('the due time must be an integer (ms, 0 = now)', ARGV[6])
end
local window = tonumber(ARGV[9])
-- the window goes to SET PX: an integer Redis reads, 1..MAX_MS (is_whole took 10^17, which Lua
-- hands to SET PX as '1e+17': it raised after the job was stored)
if mode == 't' and not is_int(ARGV[9], 1, MAX_MS) then
  return refuse('a throttle window must be a whole number of ms in 1..2^53', ARGV[9])
end
local partition = ARGV[11] or ''
local TYPES = {'HLEN', 'HLEN', 'GET', 'SCARD', 'ZCARD', 'ZCARD', 'ZCARD', false, 'ZCARD', false,
  'HLEN', 'HLEN', 'GET', 'HLEN', 'ZCARD', 'HLEN', 'ZCARD', 'ZCARD', false, false, 'GET', 'ZCARD'}
local wrong, got = wrong_type(function(j) return TYPES[j] end, 'nothing stored')
wrong = wrong or not_counter(KEYS[3], 'nothing stored')
if wrong then
  return wrong
end
if got[21] then  -- a re-send of a call that gave its envelope to another job: "outcome c h"
  local outcome, carrier, holder = string.match(got[21], '^(%S+) (%S+) (%S+)$')
  if not outcome then
    return refuse(KEYS[21] .. ' holds no answer of this script: nothing stored', got[21])
  end
  return unwritten('HDEL', KEYS[1], {outcome, carrier, holder})
end
local P = {part = KEYS[16], seq = KEYS[3], pq = KEYS[17], pready = KEYS[18]}
local turns = KEYS[22] and {pready = KEYS[18], pwait = KEYS[22]}  -- (lib/dedup dedup_unindex)

-- job `jid` carries this request: it takes the request's partition (its envelope says so) and,
-- when queued, its place in the partition index (an entry under its old partition goes, and
-- the old partition's turn and wait when that leaves none of its jobs indexed)
local function partition_of(jid)
  local old = redis.call('HGET', P.part, jid)
  local score = redis.call('ZSCORE', KEYS[6], jid)
  if old and old ~= partition then
    if score then
      dedup_unindex(P, jid, tonumber(score), turns)
    end
    redis.call('HDEL', P.part, jid)
  end
  if partition ~= '' then
    redis.call('HSET', P.part, jid, partition)
    if score then
      lim_queued(P, jid, tonumber(score), partition)
    end
  end
end
local d = {jobs = KEYS[1], prio = KEYS[2], seq = KEYS[3], idlefor = KEYS[5], wake = ARGV[1],
  dedup = KEYS[11], dedupjob = KEYS[12], window = KEYS[13], next = KEYS[14], reruns = KEYS[15],
  part = KEYS[16], pq = KEYS[17],  -- (part, pq: dedup_replace's, of the request's job name)
  turns = turns}
-- answers read and not written go through lib/types.lua's unwritten (jobs checked above as a
-- hash); 'dropped' may follow dedup_owner's clean-up of a holder gone: a no-op more
local stored = redis.call('HGET', KEYS[1], id)
if stored then
  if stored ~= ARGV[4] then
    return unwritten('HDEL', KEYS[1], {'existed', id, ''})
  end
  if redis.call('HGET', d.dedupjob, id) == 'n' .. key then
    local holder = redis.call('HGET', d.dedup, key) or ''
    return unwritten('HDEL', KEYS[1], {'rerun_queued', id, holder})
  end
  return unwritten('HDEL', KEYS[1], {'enqueued', id, id})
end
if redis.call('ZSCORE', KEYS[9], id) or redis.call('EXISTS', KEYS[10]) == 1 then
  return unwritten('HDEL', KEYS[1], {'existed', id, ''})
end
-- an id a workflow member's or callback's may be (lib/wfids.lua: taken while its run is stored;
-- included in this block, its functions built only for an id holding '.' or '!')
if string.find(id, '.', 1, true) or string.find(id, '!', 1, true) then
--@include wfids
  local member = wf_ids_taken(KEYS[19], KEYS[20], {id}, 'nothing stored')
  if member.err then
    return member
  elseif member[1] then
    return unwritten('HDEL', KEYS[1], {'existed', id, ''})
  end
end
local a = {id = id, env = ARGV[4], prio = prio, due = due, queue = KEYS[6], sched = KEYS[7],
  name = ARGV[2], names = KEYS[4]}
local function published(jid)  -- job `jid` was stored: its `enqueued` event
  if redis.call('EXISTS', KEYS[8]) == 1 then
    ev_publish(KEYS[8], ARGV[10], jid,
      '{"event":"enqueued","id":"' .. jid .. '","name":"' .. ARGV[2] .. '"}')
  end
end
local outcome, carrier, holder = dedup_admit(d, mode, key, a)
if outcome == 'dropped' then
  return unwritten('HDEL', KEYS[1], {outcome, carrier, holder or carrier})
elseif outcome then
  holder = holder or carrier
  if outcome == 'replaced' or outcome == 'rerun_queued' then
    partition_of(carrier)  -- (a rerun is indexed when the holder's end queues it: lib/dedup)
    if KEYS[21] then
      redis.call('SET', KEYS[21], outcome .. ' ' .. carrier .. ' ' .. holder, 'PX', REPLY_MS)
    end
  end
  if carrier == id then  -- a new rerun, stored by this call (it waits for the holder)
    published(id)
  end
  return {outcome, carrier, holder}
end
redis.call('HSET', KEYS[1], id, ARGV[4])
if prio ~= 0 then
  redis.call('HSET', KEYS[2], id, prio)
end
redis.call('SADD', KEYS[4], ARGV[2])
dedup_take(d, mode, key, id, window)
if due > 0 then
  redis.call('ZADD', KEYS[7], due, id)
else
  dedup_enqueue(d, id, KEYS[6])
end
partition_of(id)
published(id)
return {'enqueued', id, id}
