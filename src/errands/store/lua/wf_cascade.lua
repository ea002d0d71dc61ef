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
-- Returns {took, run, key, run, key, ...}: how many work items it took (0: none was left), then
-- each run it left alone in this call with the first of its keys found of another type.
-- The items read are those scored up to now + WF_HOLD/2 (Redis' clock): an item scored by a
-- clock ahead of this one (a failover to a replica whose clock is behind; a clock stepped
-- back) by up to 15 s is read at once, one ahead by more once this clock is within 15 s of
-- its score (the bound that remains). A held run's items (scored now + WF_HOLD) are not read
-- for the first half of their hold; read again, they are set aside again (behind the items due
-- then), so the caller's next calls reach the items behind them: they never starve the others.
-- A key of another type among the namespace's its walks write (wf_unfit; or seq not a counter)
-- fails the call before its first write: the item taken off the list and then not walked lost
-- its dependents' edges. The work list of another type is refused by name (Redis' own
-- WRONGTYPE, which names no key, came from its read). A run one of whose own keys holds another
-- type (written by hand, a bad restore) is left alone, the other runs walked: its items are set
-- aside (their score WF_HOLD ms ahead: not read again for WF_HOLD/2, nor by this call's
-- caller's next call), nothing of that run written; read again 15 s on, they are walked
-- once the key is repaired (workflows/store.py logs the key and its repair).
--@include workflows
--@include types
local WF_HOLD = 30000
local now = wf_now()
local items = redis.pcall('ZRANGEBYSCORE', KEYS[2], '-inf', now + WF_HOLD / 2, 'LIMIT', 0, 100)
if items.err then
  return wrong_key(KEYS[2], 'nothing walked')
end
local wrong = #items > 0 and (wrong_type(function(j) return ({'HLEN'})[j] end, 'nothing walked')
  or wf_unfit(KEYS[1], nil, 'nothing walked'))
if wrong then
  return wrong
end
local runs, held = {}, {}  -- run -> false (fit) or its key of another type
for _, item in ipairs(items) do
  local _, _, _, run = string.match(item, '^(%a+) (%S+) (%S*) (.+)$')
  if run and runs[run] == nil then
    runs[run] = wf_run_unfit(wf_keys(KEYS[1], run)) or false
    if runs[run] then
      held[#held + 1], held[#held + 2] = run, runs[run]
    end
  end
end
local took = 0
local batch = {evs = {}}  -- (every run's events: one HMGET of `listening` per 1,000)
for _, item in ipairs(items) do
  if WF_WALKED[1] >= WF_STEP or WF_EDGES[1] >= WF_CALL then
    break
  end
  took = took + 1
  local st, n, cursor, run = string.match(item, '^(%a+) (%S+) (%S*) (.+)$')
  if run and runs[run] then
    redis.call('ZADD', KEYS[2], now + WF_HOLD, item)  -- (set aside: its run's key holds another type)
  elseif run then
    redis.call('ZREM', KEYS[2], item)
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
  else
    redis.call('ZREM', KEYS[2], item)
  end
end
wf_events_flush(batch)
return {took, unpack(held)}
