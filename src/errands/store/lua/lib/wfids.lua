-- lib/wfids: whether a job id is a workflow member's or callback's while its run is stored
-- (included by `--@include wfids`; the enqueue scripts refuse such an id as one taken, see
-- docs/workflows.md). A member is the job "<run>.<node>", a callback "<run>!on_success" or
-- "<run>!on_failure" (lib/workflows.lua); a member waiting for its dependencies is in no job
-- hash yet, and an ended one's tombstone may be gone while its run lingers: the run's nodes
-- hash holds them all, from the run's store (wf_enqueue, wf_add) to the end of its linger.
--@include wfkeys
-- wf_id_taken(wfidx, wfof, id, seen, outcome[, own]): `wfidx` the index of runs (store/keys.py
-- workflows: every run stored, lingering included), `wfof` workflow_of (wf_keys builds a run's
-- keys from it),
-- `seen` a table kept over one call (its `any`: whether wfidx holds a run, asked once),
-- `outcome` what an error reply says was done, `own` a run whose own member the id is not
-- taken as (the run a workflow script stores or adds to: it checks its own nodes itself).
-- Read only: at most one ZCARD a call, then for an id holding '.' or ending in a callback's
-- name one ZMSCORE of its candidate runs (a node id is 1-120 characters without '!':
-- workflows/graph.py; at most 121 candidates, every run id the id may start with) and one
-- HEXISTS of a run's nodes per run found. ZMSCORE refused (an ACL rule of an older errands,
-- Redis < 6.2): one ZSCORE per candidate. Returns true when taken; false, or an error reply
-- (wrong_key's, lib/types.lua) when wfidx holds another type.
local function wf_id_taken(wfidx, wfof, id, seen, outcome, own)
  if seen.any == nil then
    local n = redis.pcall('ZCARD', wfidx)
    if type(n) == 'table' then
      return wrong_key(wfidx, outcome)
    end
    seen.any = n > 0
  end
  if not seen.any then
    return false
  end
  local runs, nodes = {}, {}
  local cb = string.match(id, '^(.+)(![%a_]+)$')
  local kind = cb and string.sub(id, #cb + 1)
  if cb ~= own and (kind == '!on_success' or kind == '!on_failure') then
    runs[1], nodes[1] = cb, kind
  end
  local at = string.find(id, '.', math.max(2, #id - 120), true)
  while at do
    local run, node = string.sub(id, 1, at - 1), string.sub(id, at + 1)
    if node ~= '' and run ~= own and not string.find(node, '!', 1, true) then
      runs[#runs + 1], nodes[#nodes + 1] = run, node
    end
    at = string.find(id, '.', at + 1, true)
  end
  if #runs == 0 then
    return false
  end
  local scores = redis.pcall('ZMSCORE', wfidx, unpack(runs))
  for i, run in ipairs(runs) do
    local score = scores[i]
    if scores.err then
      score = redis.call('ZSCORE', wfidx, run)
    end
    if score and redis.pcall('HEXISTS', wf_keys(wfof, run).nodes, nodes[i]) == 1 then
      return true
    end
  end
  return false
end
