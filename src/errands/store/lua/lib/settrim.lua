-- lib/settrim: trimming a set of ended jobs (dead or cancelled) by age and size, the trim's
-- consequences in the same call (included by `--@include settrim` from trim_set.lua, and from
-- settle.lua, which trims the set it buries a job in). A workflow member parked in the dead set
-- (lib/workflows.lua wf_queue: released while its queue held another type) has not ended: its
-- run waits for it, and a trim that forgot it left the run `running` for ever (no callback, no
-- linger). Its trim ends it as failed, behind wf_end's edge (the HDEL of its `wfof` field).
--@include events
--@include jobstate
--@include workflows
--@include chunked
local SET_TRIMMED = '{"error":"trimmed from the dead set, where it was parked without ending"}'

-- of `ids`, jobs about to be trimmed (reads only; wf_unfit reads with pcall): the members whose
-- end is not handled, as a map id -> run, and those of a run that cannot take their end (a key
-- of another type, lib/wfkeys.lua wf_unfit), as a set of ids to leave in the set (trimmed once
-- repaired: one run's bad key does not hold the trim of the others). `verdict` caches wf_unfit's
-- answer per run (the caller's, across its pages: once per run a call). One HMGET of `wfof` (a
-- HASH: the caller checked) per 1,000 ids
local function set_trim_members(wfof, ids, verdict)
  local ends, kept = {}, {}
  local runs = read_chunked('HMGET', wfof, ids)  -- (lib/chunked.lua)
  for j = 1, #ids do
    local run = runs[j]
    if run then
      if verdict[''] == nil then
        verdict[''] = wf_unfit(wfof, nil, 'not trimmed') or false
      end
      if verdict[run] == nil then
        verdict[run] = verdict[''] or wf_unfit(wfof, run, 'not trimmed', true) or false
      end
      if verdict[run] then
        kept[ids[j]] = true
      else
        ends[ids[j]] = run
      end
    end
  end
  return ends, kept
end

-- the ids of `set` to trim and the members among them to end (set_trim_members): up to `limit`
-- past the age bound `before` (ms) and up to `limit` more over the size `most`, never `except`
-- (settle.lua's own job; nil: none). Entries left in the set (a run with a key of another type)
-- are paged past, not counted against `limit`: at most 2 x limit entries read by age per call,
-- in pages of `limit` (two at most), so up to `limit` kept ones among the oldest do not hold the
-- age trim of the others (from `limit` to 2 x limit they slow it; 2 x limit or more stop it until
-- their runs are repaired). The size trim takes only ranks below ZCARD - most, past those read
-- by age: the newest `most` entries are never trimmed by size, kept ones older than them or not
-- (kept ones in its ranks take its room: up to `limit` entries read by size per call)
local function set_trim_pick(set, before, most, limit, wfof, except)
  local stale, ends, verdict = {}, {}, {}
  -- takes `ids` in order while fewer than `cap` are stale; returns how many of them it went over
  local function take(ids, cap)
    local left = {}
    for _, id in ipairs(ids) do
      if id ~= except then left[#left + 1] = id end
    end
    local runs, kept = {}, {}
    if wfof and #left > 0 then
      runs, kept = set_trim_members(wfof, left, verdict)
    end
    for i, id in ipairs(ids) do
      if #stale >= cap then return i - 1 end
      if id ~= except and not kept[id] then
        stale[#stale + 1] = id
        if runs[id] then ends[#ends + 1] = {id, runs[id]} end
      end
    end
    return #ids
  end
  local read = 0  -- (ranks 0 .. read - 1 gone over by age)
  while #stale < limit and read < 2 * limit do
    local want = math.min(limit, 2 * limit - read)
    local page = redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. before, 'LIMIT', read, want)
    read = read + take(page, limit)
    if #page < want then break end
  end
  local excess = math.min(redis.call('ZCARD', set) - tonumber(most) - read, limit)
  if excess > 0 then  -- (ranks read .. ZCARD - most - 1 at most: past those read by age)
    take(redis.call('ZRANGE', set, read, read + excess - 1), #stale + excess)
  end
  return stale, ends
end

-- trim `stale` and end `ends` (both from set_trim_pick) from `set`: each published as `deleted`
-- (reason `trimmed`) while someone listens (`listening`, `channel`), forgotten with a tombstone;
-- a workflow member among them not ended yet ends as failed (its run's `wfof`, the workflow_of
-- key; nil: none looked at, a caller of an older version). Returns how many were trimmed
local function set_trim(k, set, stale, ends, wfof, listening, channel)
  if #stale == 0 then
    return 0
  end
  redis.call('ZREM', set, unpack(stale))
  publish_trimmed(k, listening, channel, stale)
  forget(k, stale, redis_now())
  for _, it in ipairs(ends) do
    wf_end(wfof, it[1], 'failed', SET_TRIMMED, it[2])
  end
  return #stale
end
