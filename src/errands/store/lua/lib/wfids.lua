-- lib/wfids: which job ids are workflow members' or callbacks' while their run is stored
-- (included by `--@include wfids`; the enqueue scripts refuse such an id as one taken, see
-- docs/workflows.md). A member is the job "<run>.<node>", a callback "<run>!on_success" or
-- "<run>!on_failure" (lib/workflows.lua); a member waiting for its dependencies is in no job
-- hash yet, and an ended one's tombstone may be gone while its run lingers: the run's nodes
-- hash holds them all, from the run's store (wf_enqueue, wf_add) to the end of its linger.
--@include wfkeys
--@include chunked
-- wf_ids_taken(wfidx, wfof, ids, outcome[, own[, checked]]): `wfidx` the index of runs
-- (store/keys.py workflows: every run stored, lingering included), `wfof` workflow_of (wf_keys
-- builds a run's keys from it), `ids` a list of job ids, `outcome` what an error
-- reply says was done, `own` a run whose own member an id is not taken as (the run a workflow
-- script stores or adds to: it checks its own nodes itself), `checked` true when the caller
-- checked wfidx's type already (lib/wfkeys.lua wf_unfit) and it may hold a run.
-- The candidates of an id: each run it may be a member of ("<run>.<node>", a node id 1-120
-- characters without '!': workflows/graph.py; at most 121 of an id), or the callback's run.
-- Read only, per call: a ZCARD of wfidx (but when `checked`: none), and while it holds a run
-- one ZMSCORE per 1,000 distinct candidate runs (lib/chunked.lua read_zmscore: a ZSCORE each
-- when ZMSCORE is refused, an ACL rule of an older errands, Redis < 6.2), then for each run
-- found one HMGET of its nodes per 1,000 nodes asked of it (a nodes key of another type: none
-- of them, its error reply not raised). Returns a table whose [i] is true
-- when ids[i] is taken; or an error reply (wrong_key's, lib/types.lua: its `err` set) when
-- wfidx holds another type.
local function wf_ids_taken(wfidx, wfof, ids, outcome, own, checked)
  local taken = {}
  if not checked then
    local n = redis.pcall('ZCARD', wfidx)
    if type(n) == 'table' then
      return wrong_key(wfidx, outcome)
    end
    if n == 0 then
      return taken
    end
  end
  -- asked[run]: its nodes asked and the ids they are (flat pairs: node, place in `ids`); each
  -- id's candidates in turn, the callback's first (`run` set: one to add to its run's list)
  local runs, asked = {}, {}
  for i, id in ipairs(ids) do
    local run = string.match(id, '^(.+)(![%a_]+)$')
    local node = run and string.sub(id, #run + 1)
    if run == own or not (node == '!on_success' or node == '!on_failure') then
      run = nil
    end
    local at = string.find(id, '.', math.max(2, #id - 120), true)
    while run or at do
      if run then
        local list = asked[run]
        if not list then
          list = {}
          asked[run], runs[#runs + 1] = list, run
        end
        local k = #list
        list[k + 1], list[k + 2] = node, i
        run = nil
      end
      if at then
        local r, n = string.sub(id, 1, at - 1), string.sub(id, at + 1)
        if n ~= '' and r ~= own and not string.find(n, '!', 1, true) then
          run, node = r, n
        end
        at = string.find(id, '.', at + 1, true)
      end
    end
  end
  for r, score in ipairs(read_zmscore(wfidx, runs)) do
    local list = score and asked[runs[r]]
    for c = 1, list and #list or 0, 2 * CHUNK do
      local e, nodes = math.min(#list, c + 2 * CHUNK - 1), {}
      for k = c, e, 2 do
        nodes[#nodes + 1] = list[k]
      end
      -- (pcall: a nodes key of another type is read as holding none of them, not raised)
      local there = redis.pcall('HMGET', wf_keys(wfof, runs[r]).nodes, unpack(nodes))
      for k = 1, there.err and 0 or #nodes do
        if there[k] then
          taken[list[c + 2 * k - 1]] = true
        end
      end
    end
  end
  return taken
end
