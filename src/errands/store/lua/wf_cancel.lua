-- wf_cancel: cancel a running workflow run. The first call marks it cancelled: from then on no
-- member is released (a member whose last dependency ends is ended as cancelled instead) and
-- no callback runs. Each call then ends the given members that still wait for their
-- dependencies (bounded: the caller passes a few hundred at a time); members already queued or
-- running are cancelled by the caller one by one (cancel.lua, which ends them here). The
-- dependents of the members it ends are walked WF_STEP at a time (lib/workflows.lua), the
-- rest left on the work list for wf_cascade.lua. Each member it ends publishes its `cancelled`
-- event (only while someone listens; one HMGET of `listening` per 1,000: lib/wfevents.lua).
-- KEYS[1] workflow_of   KEYS[2] the run (HASH); its other keys are built from the prefix of
-- KEYS[1] (lib/workflows.lua)   KEYS[3] the reply key of this call: a call that ran is noted
-- there 10 minutes, and its re-send (redis-py, after a lost reply) answers 1 from it, doing
-- nothing (the run it finished is no longer running)
-- ARGV[1] run id   ARGV[2..] nodes waiting for their dependencies
-- Returns 1, or 0 when the run is not running (finished, lingering or unknown). A key of the
-- run or of the namespace that lib/workflows.lua writes of another type (workflow_of too; or
-- seq not a counter: wf_unfit) fails the call before its first write: it raised after noting
-- its reply, and its re-send answered 1, the members never ended.
-- Both answers read (1 from the reply key, 0) write nothing first (lib/types.lua unwritten,
-- on the run): a demoted master refuses them, where the new master may hold the run running
-- (the first call's writes not replicated; a run stored since). The run of another type is
-- refused by name whatever the answer (Redis' own WRONGTYPE, which names no key, came from its
-- read).
--@include workflows
--@include types
local status = redis.pcall('HGET', KEYS[2], 'status')
if type(status) == 'table' and status.err then
  return wrong_key(KEYS[2], 'nothing cancelled')
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return unwritten('HDEL', KEYS[2], 1)
end
if status ~= 'running' then
  return unwritten('HDEL', KEYS[2], 0)
end
local wrong = wrong_type(function(j) return j == 1 and 'HLEN' end, 'nothing cancelled', 1)
  or wf_unfit(KEYS[1], ARGV[1], 'nothing cancelled')  -- (workflow_of: each member's end HDELs it)
if wrong then
  return wrong
end
redis.call('SET', KEYS[3], '1', 'PX', ADMIN_REPLY_MS)
redis.call('HSET', KEYS[2], 'cancel', '1')
local W = wf_keys(KEYS[1], ARGV[1])
W.evs = {}  -- (the `cancelled` events of the members it ends, published together)
local todo = {}
for i = 2, #ARGV do
  if wf_drop_held(W, ARGV[i]) then
    -- (its job name, for its event: read only while someone listens)
    local spec = wf_listening(W.P) and redis.call('HGET', W.nodes, ARGV[i])
    local name = spec and wf_spec(spec).n
    if wf_dropped(W, ARGV[i], name, '{"error":"the workflow was cancelled"}') then
      todo[#todo + 1] = {ARGV[i], 'cancelled', ''}
    end
  end
end
wf_walk_all(W, todo, WF_STEP)
wf_after(W)
wf_events_flush(W)
return 1
