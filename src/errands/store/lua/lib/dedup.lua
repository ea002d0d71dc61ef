-- lib/dedup: deduplication (errands/dedup/, docs/dedup.md), included by `--@include dedup` in
-- enqueue_dedup, schedule_fire and the scripts that start or end a job. A table `d` names the
-- keys, taken from the including script's KEYS: jobs, dedup (HASH dedup key -> owner id),
-- dedupjob (HASH id -> mode letter .. dedup key); to hand a key over to a waiting rerun also
-- next (HASH dedup key -> id of the rerun waiting for it), reruns (ZSET of those reruns: their
-- place), seq, prio, idle (or idlefor) and the wake channel; for admission window (the throttle window).
-- Modes: 's' until started, 'd' debounce (until started), 'f' until finished, 'r' until
-- finished with rerun_latest ('F', 'R' once started), 'n' a rerun waiting for its key's owner to
-- end, 't' throttle (a window, no owner); 'S', 'D' a job held until started (or debounced)
-- whose fetch freed its key, until it is settled (dedup_unstarted, dedup_settled). Every
-- release is a compare-and-delete on the owner id, behind the HDEL of the job's dedupjob entry
-- (or, from a fetch, behind its fence): a late (fenced-out) transition of an old owner frees
-- nothing. Scripts pay one HLEN per call while no dedup job exists (dedup_any).
--@include prio
--@include wake
--@include limits
--@include edits

local function dedup_any(d)
  return redis.call('HLEN', d.dedupjob) > 0
end

-- put waiting job `id` on `queue` behind the jobs of its priority, waking one idle pool of
-- the queue's name (d.idlefor, its idle pools, see lib/wake.lua) or, without, every idle pool
local function dedup_enqueue(d, id, queue)
  local seq = redis.call('INCR', d.seq)
  local prio = prio_of(redis.call('HGET', d.prio, id))
  redis.call('ZADD', queue, queue_score(seq, prio), id)
  if d.idlefor then
    wake_one(d.idlefor, d.wake .. ':', false)
  elseif redis.call('SCARD', d.idle) > 0 then
    redis.call('PUBLISH', d.wake, 'dedup')
  end
end

-- a rerun enqueued with a partition (its `part` field) is indexed by it as it goes on `queue`
-- (lib/limits.lua's lim_queued). Its keys are built from the prefix of the declared dedup key,
-- as lib/workflows.lua builds a released member's: all under the namespace's hash tag, so in
-- the slot of the script's keys.
local function dedup_index(d, id, queue)
  local pre = string.sub(d.dedup, 1, #d.dedup - 5)  -- "<prefix>dedup"
  local part = redis.call('HGET', pre .. 'part', id)
  if not part or string.sub(queue, 1, #pre + 2) ~= pre .. 'q:' then
    return
  end
  local name = string.sub(queue, #pre + 3)  -- "<prefix>q:<name>"
  local P = {seq = pre .. 'seq', pq = pre .. 'pq:' .. name, pready = pre .. 'pready:' .. name}
  lim_queued(P, id, tonumber(redis.call('ZSCORE', queue, id)), part)
end

-- the rerun waiting for `key` (if any and if `queue` is known) becomes its owner and goes on
-- `queue`; returns its id, or false
local function dedup_promote(d, key, queue)
  if not d.next or not queue then return false end
  local nxt = redis.call('HGET', d.next, key)
  if not nxt then return false end
  redis.call('HDEL', d.next, key)
  if redis.call('ZREM', d.reruns, nxt) == 1 and redis.call('HEXISTS', d.jobs, nxt) == 1 then
    redis.call('HSET', d.dedup, key, nxt)
    redis.call('HSET', d.dedupjob, nxt, 'r' .. key)
    dedup_enqueue(d, nxt, queue)
    dedup_index(d, nxt, queue)
    return nxt
  end
  redis.call('HDEL', d.dedupjob, nxt)
  return false
end

-- the owner `id` of `key` lets it go (only if it still owns it): to the waiting rerun, if any
local function dedup_free(d, key, id, queue)
  if redis.call('HGET', d.dedup, key) == id then
    if not dedup_promote(d, key, queue) then
      redis.call('HDEL', d.dedup, key)
    end
  end
end

-- fetch: job `id` started. A key held until the start is freed, its record marked fetched ('S',
-- 'D': a job fetched ahead and given back unstarted takes its key again, dedup_unstarted; any
-- other settle forgets the mark, dedup_settled); one held until the end is marked started.
local function dedup_started(d, id)
  local v = redis.call('HGET', d.dedupjob, id)
  if not v then return end
  local mode, key = string.sub(v, 1, 1), string.sub(v, 2)
  if mode == 's' or mode == 'd' then
    redis.call('HSET', d.dedupjob, id, string.upper(mode) .. key)
    dedup_free(d, key, id, nil)
  elseif mode == 'f' or mode == 'r' then
    redis.call('HSET', d.dedupjob, id, string.upper(mode) .. key)
  end
end

-- settle, reap: job `id` goes on waiting after a run (a retry, a snooze, a requeue): the mark of
-- its first fetch goes (held until started, its key was freed by that start for good)
local function dedup_settled(d, id)
  local v = redis.call('HGET', d.dedupjob, id)
  local mode = v and string.sub(v, 1, 1)
  if mode == 'S' or mode == 'D' then
    redis.call('HDEL', d.dedupjob, id)
  end
end

-- job `id` ended (acked, dead, dropped, cancelled, deleted): the key it owns is freed, or handed
-- to the rerun waiting for it, which goes on `queue` (its job name's queue); a waiting rerun
-- that ended leaves its key's `next`
local function dedup_ended(d, id, queue)
  local v = redis.call('HGET', d.dedupjob, id)
  if not v or redis.call('HDEL', d.dedupjob, id) == 0 then return end
  local mode, key = string.sub(v, 1, 1), string.sub(v, 2)
  if mode == 'n' then
    if d.next and redis.call('HGET', d.next, key) == id then
      redis.call('HDEL', d.next, key)
    end
    if d.reruns then
      redis.call('ZREM', d.reruns, id)
    end
  else
    dedup_free(d, key, id, queue)
  end
end

-- the owner of `key`, or false; an owner whose job no longer exists counts as free (its
-- entries go), and a rerun left waiting without an owner takes the key (onto `queue`)
local function dedup_owner(d, key, queue)
  local holder = redis.call('HGET', d.dedup, key)
  if holder and redis.call('HEXISTS', d.jobs, holder) == 0 then
    redis.call('HDEL', d.dedup, key)
    if string.sub(redis.call('HGET', d.dedupjob, holder) or '', 2) == key then
      redis.call('HDEL', d.dedupjob, holder)
    end
    holder = false
  end
  if not holder then
    holder = dedup_promote(d, key, queue)
  end
  return holder
end

-- settle: job `id`, fetched ahead and given back before it started, waits again as never
-- started: held until started (its first fetch freed the key, dedup_started), it takes its key
-- again unless another job took it meanwhile (then it waits without one, as after a start).
-- `queue`: its job name's queue, the key's: an owner gone with a rerun waiting hands the key
-- to the rerun (dedup_owner), as an enqueue of the key would
local function dedup_unstarted(d, id, queue)
  local v = redis.call('HGET', d.dedupjob, id)
  local mode, key = v and string.sub(v, 1, 1), v and string.sub(v, 2)
  if mode ~= 'S' and mode ~= 'D' then return end
  if dedup_owner(d, key, queue) then
    redis.call('HDEL', d.dedupjob, id)
  else
    redis.call('HSET', d.dedup, key, id)
    redis.call('HSET', d.dedupjob, id, string.lower(mode) .. key)
  end
end

-- admission for schedules (modes s, f, t): false when the key is free, else 'dropped' and the
-- id of the job holding it
local function dedup_holder(d, mode, key, queue)
  if mode == 't' then
    local holder = redis.call('GET', d.window)
    if holder then return 'dropped', holder end
    return false
  end
  local holder = dedup_owner(d, key, queue)
  if holder then return 'dropped', holder end
  return false
end

-- job `id` left the queue, or its `score` there: its partition index entry under that score
-- goes (d.part, d.pq: enqueue_dedup.lua's keys, of its job name). With `t` (the name's
-- partitions ready and waiting, t.pready and t.pwait: the job left the queue), its partition's
-- turn and rate wait go too once none of its jobs is indexed, and every turn and wait of the
-- name once none is (as lim_prune after a fetch): only a fetch serving partitions dropped them,
-- none does while no job of the namespace has a partition, and they stayed for good
local function dedup_unindex(d, id, score, t)
  local part = redis.call('HGET', d.part, id)
  if part then
    redis.call('ZREM', d.pq, lim_entry(part, score, id))
    if t and redis.call('ZCARD', d.pq) == 0 then
      redis.call('DEL', t.pready, t.pwait)
    elseif t and not lim_head(d.pq, part) then
      redis.call('ZREM', t.pready, part)
      redis.call('ZREM', t.pwait, part)
    end
  end
end

-- waiting job `id` takes the envelope and priority `a` brings, keeping its count of edits
-- (lib/edits.lua with_edits: the history records "<id>:e<n>" of its edits stay, its next edit,
-- update_job.lua, is numbered after them, and destroy.lua erases them) and of the attempts it
-- ran (a job run again by hand: its next run is numbered after them); queued (on a.queue),
-- it keeps its place among the jobs of its new priority (its sequence number, as update_job.lua
-- moves it: kept under the old priority's score, it ran at that one, and an edit of its
-- priority later moved it by the wrong difference). Its partition index entry under the old
-- score goes (dedup_unindex); the caller indexes it anew.
local function dedup_replace(d, id, a)
  local held = redis.call('HGET', d.jobs, id)  -- (decoded only when it names a count)
  local e, h = 0, 0
  if held and (string.find(held, '"e"', 1, true) or string.find(held, '"h"', 1, true)
      or string.find(held, '"f"', 1, true)) then
    e, h = counts_of(held)
  end
  redis.call('HSET', d.jobs, id, with_edits(a.env, e, h))
  local old = prio_of(redis.call('HGET', d.prio, id))
  if a.prio ~= 0 then
    redis.call('HSET', d.prio, id, a.prio)
  else
    redis.call('HDEL', d.prio, id)
  end
  local score = a.prio ~= old and redis.call('ZSCORE', a.queue, id)
  if not score then
    return
  end
  score = tonumber(score)
  redis.call('ZADD', a.queue, score + (old - a.prio) * PRIO_STEP, id)
  dedup_unindex(d, id, score)
end

-- stored job `id` waits as the rerun of `key` (rerun_latest), whose owner started: queued by
-- the owner's end (dedup_promote). A rerun named by `next` whose job is gone (removed by hand)
-- leaves its records.
local function dedup_wait_rerun(d, key, id)
  local old = redis.call('HGET', d.next, key)
  if old and old ~= id then
    redis.call('ZREM', d.reruns, old)
    if redis.call('HGET', d.dedupjob, old) == 'n' .. key then
      redis.call('HDEL', d.dedupjob, old)
    end
  end
  redis.call('HSET', d.next, key, id)
  redis.call('HSET', d.dedupjob, id, 'n' .. key)
  local t = redis.call('TIME')
  redis.call('ZADD', d.reruns, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), id)
end

-- rerun_latest, a job put back to wait by hand (move.lua) while `owner` holds `key`: true when
-- it can wait as the owner's rerun, as a duplicate enqueue would: the owner started and no
-- rerun (of a job still stored) waits for it; false: refused (a waiting owner takes the latest
-- args itself, a waiting rerun has them)
local function dedup_rerun_slot(d, key, owner)
  local held = string.sub(redis.call('HGET', d.dedupjob, owner) or '', 1, 1)
  if held ~= 'F' and held ~= 'R' then return false end
  local nxt = redis.call('HGET', d.next, key)
  return not (nxt and redis.call('HEXISTS', d.jobs, nxt) == 1)
end

-- admission of job `a` ({id, env, prio, due, queue, sched, name, names}) in any mode: false
-- when the caller stores it (then dedup_take), else outcome, id of the job that carries the
-- request, id of the key's holder. A waiting holder that takes the request's envelope (modes d
-- and r) takes its mode too (its envelope's `x` says so): it holds the key as the request asked
local function dedup_admit(d, mode, key, a)
  if mode == 't' then
    return dedup_holder(d, mode, key, a.queue)
  end
  local holder = dedup_owner(d, key, a.queue)
  if not holder then return false end
  if mode == 's' or mode == 'f' then return 'dropped', holder, holder end
  local held = string.sub(redis.call('HGET', d.dedupjob, holder) or '', 1, 1)
  if held == 's' or held == 'd' or held == 'f' or held == 'r' then  -- waiting, never started
    dedup_replace(d, holder, a)
    redis.call('HSET', d.dedupjob, holder, mode .. key)
    if mode == 'd' then  -- pushed back: to the new due time, or onto the queue
      if a.due > 0 then
        local score = redis.call('ZSCORE', a.queue, holder)
        if redis.call('ZREM', a.queue, holder) == 1 then  -- no longer ready: not indexed
          dedup_unindex(d, holder, tonumber(score), d.turns)
        end
        redis.call('ZADD', a.sched, a.due, holder)
      elseif redis.call('ZREM', a.sched, holder) == 1 then
        dedup_enqueue(d, holder, a.queue)
      end
    end
    return 'replaced', holder, holder
  end
  if mode ~= 'r' then return 'dropped', holder, holder end
  local nxt = redis.call('HGET', d.next, key)
  if nxt and redis.call('HEXISTS', d.jobs, nxt) == 1 then
    dedup_replace(d, nxt, a)
    return 'rerun_queued', nxt, holder
  end
  -- the first rerun: stored, it waits in `reruns` until the holder's life ends
  redis.call('HSET', d.jobs, a.id, a.env)
  if a.prio ~= 0 then
    redis.call('HSET', d.prio, a.id, a.prio)
  end
  redis.call('SADD', a.names, a.name)
  dedup_wait_rerun(d, key, a.id)
  return 'rerun_queued', a.id, holder
end

-- job `id`, just stored, takes `key` (a throttle window of `window_ms`)
local function dedup_take(d, mode, key, id, window_ms)
  if mode == 't' then
    redis.call('SET', d.window, id, 'PX', window_ms)
  else
    redis.call('HSET', d.dedup, key, id)
    redis.call('HSET', d.dedupjob, id, mode .. key)
  end
end
