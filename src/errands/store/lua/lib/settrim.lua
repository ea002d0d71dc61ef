-- lib/settrim: trimming a set of ended jobs (dead or cancelled) by age and size, the trim's
-- consequences in the same call (included by `--@include settrim` from trim_set.lua, and from
-- settle.lua, which trims the set it buries a job in). A workflow member parked in the dead set
-- (lib/workflows.lua wf_queue: released while its queue held another type) has not ended: its
-- run waits for it, and a trim that forgot it left the run `running` for ever (no callback, no
-- linger). Its trim ends it as failed, behind wf_end's edge (the HDEL of its `wfof` field).
--@include events
--@include jobstate
--@include workflows
local SET_TRIMMED = '{"error":"trimmed from the dead set, where it was parked without ending"}'

-- of `ids`, jobs about to be trimmed (reads only; wf_unfit reads with pcall): the members whose
-- end is not handled, as a list of {id, run}, and those of a run that cannot take their end (a
-- key of another type, lib/wfkeys.lua wf_unfit), as a set of ids to leave in the set (trimmed
-- once repaired: one run's bad key does not hold the trim of the others). One HMGET of `wfof`
-- (a HASH: the caller checked) per 1,000 ids
local function set_trim_members(wfof, ids)
  local ends, kept, verdict = {}, {}, {}
  for c = 1, #ids, 1000 do
    local e = math.min(c + 999, #ids)
    local runs = redis.call('HMGET', wfof, unpack(ids, c, e))
    for j = c, e do
      local run = runs[j - c + 1]
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
          ends[#ends + 1] = {ids[j], run}
        end
      end
    end
  end
  return ends, kept
end

-- trim `stale` (ids chosen by the caller) from `set`: each published as `deleted` (reason
-- `trimmed`) while someone listens (`listening`, `channel`), forgotten with a tombstone; a
-- workflow member among them not ended yet ends as failed (its run's `wfof`, the workflow_of
-- key; nil: none looked at, a caller of an older version). Returns how many were trimmed
local function set_trim(k, set, stale, wfof, listening, channel)
  local ends, kept = {}, {}
  if wfof and #stale > 0 then
    ends, kept = set_trim_members(wfof, stale)
  end
  if next(kept) then
    local left = {}
    for _, id in ipairs(stale) do
      if not kept[id] then
        left[#left + 1] = id
      end
    end
    stale = left
  end
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
