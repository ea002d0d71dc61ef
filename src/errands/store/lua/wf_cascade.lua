-- wf_cascade: continue the walks of dependents left on the work list (see lib/workflows.lua):
-- at most WF_STEP dependents, WF_CALL in edges of ended members and 100 work items per call,
-- the oldest first; a walk (or a removal of edges) that does not end goes back to the list
-- where it stopped. A run that no longer runs has nothing left
-- to walk (every dependent ended: its item is dropped). A pool calls it after an ack of
-- workflow members and at each requeuer pass (and drain), WorkflowRun.cancel after its
-- batches, until it returns 0. A re-sent call
-- continues the next part of the work, as the caller's next call would. The events of the
-- members it releases or ends (lib/wfevents.lua) are published together at its end.
-- KEYS[1] workflow_of   KEYS[2] workflows_work (ZSET)
-- ARGV none
-- Returns how many work items it took (0: none was left).
-- A key of another type among those its walks write (the namespace's and each run's, see
-- wf_unfit; or seq not a counter) fails the call before its first write: the item taken off
-- the list and then not walked lost its dependents' edges. The work list of another type is
-- refused by name (Redis' own WRONGTYPE, which names no key, came from its read).
--@include workflows
--@include types
local items = redis.pcall('ZRANGE', KEYS[2], 0, 99)
if items.err then
  return wrong_key(KEYS[2], 'nothing walked')
end
local wrong = #items > 0 and (wrong_type(function(j) return ({'HLEN'})[j] end, 'nothing walked')
  or wf_unfit(KEYS[1], nil, 'nothing walked'))
local runs = {}
for _, item in ipairs(items) do
  local _, _, _, run = string.match(item, '^(%a+) (%S+) (%S*) (.+)$')
  if run and not runs[run] and not wrong then
    runs[run] = true
    wrong = wf_unfit(KEYS[1], run, 'nothing walked', true)
  end
end
if wrong then
  return wrong
end
local took = 0
local batch = {evs = {}}  -- (every run's events: one HMGET of `listening` per 1,000)
for _, item in ipairs(items) do
  if WF_WALKED[1] >= WF_STEP or WF_EDGES[1] >= WF_CALL then
    break
  end
  took = took + 1
  redis.call('ZREM', KEYS[2], item)
  local st, n, cursor, run = string.match(item, '^(%a+) (%S+) (%S*) (.+)$')
  if run then
    local W = wf_keys(KEYS[1], run)
    W.evs, batch.P = batch.evs, W.P
    if redis.call('HGET', W.meta, 'status') ~= 'running' then
      -- nothing left to walk nor to remove: the run's edges went when it finished
    elseif st == 'edges' then
      if not wf_unlink(W, n, WF_CALL - WF_EDGES[1]) then
        redis.call('ZADD', KEYS[2], wf_now(), item)
      end
    else
      wf_walk_all(W, {{n, st, cursor}}, WF_STEP - WF_WALKED[1])
      wf_after(W)
    end
  end
end
wf_events_flush(batch)
return took
