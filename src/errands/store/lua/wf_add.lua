-- wf_add: add a member to a running workflow run (a running member growing its own run). The
-- new member runs after the `after` nodes that have not ended yet, and every `before` node (each
-- still waiting for its dependencies) now also waits for it. The run cannot finish meanwhile:
-- whoever adds is a member that has not ended, or the run is refused as not running.
-- Everything is checked before the first write. A node already in the run with the same spec
-- (job name, policy, priority, after nodes) and before nodes is not added again: '' as when
-- it was added (a re-sent call, a retried handler adding the same ids).
-- KEYS[1] workflow_of   KEYS[2] the run (HASH)   KEYS[3] its open set   KEYS[4] its in edges
-- KEYS[5] its out edges   KEYS[6] its nodes   KEYS[7] its envelopes   KEYS[8] its outcomes
-- KEYS[9] jobs   KEYS[10] ended (tombstones)   KEYS[11] the result-record key of the member's
-- job id "<run>.<node>"
-- ARGV[1] run id   ARGV[2] node id   ARGV[3] job name   ARGV[4] priority   ARGV[5] envelope
-- ARGV[6] spec JSON (with every after node)   ARGV[7] A: how many after nodes follow
-- ARGV[8 .. 7+A] after nodes   ARGV[8+A ..] before nodes
-- Returns '' when added, else why not (its job id taken: stored, its tombstone in `ended` or its
-- result record there, as wf_enqueue.lua and enqueue.lua refuse an id, or a member's or
-- callback's of another run still stored, lib/wfids.lua; an unknown node, a
-- before node no longer waiting, a
-- cycle it would close, the run grown past WF_MAX_SIZE members, edges and callbacks in all:
-- lib/workflows.lua, 50,000, its size field, ZCARD of its out edges and its callbacks, with the
-- new member and an edge to each after and before node); an error, before any write, when the
-- arguments do not fit (as many after and before nodes as WF_MAX_SIZE or more; the priority
-- not a whole number in -1000..1000, the count of after nodes not a whole number of them; 'nan'
-- and 'inf' included; a node id lib/workflows.lua wf_node_ok refuses; a spec without its job
-- name "n"), a
-- key it may write of another type (the run's, workflow_of, the namespace's: lib/wfkeys.lua
-- wf_unfit), seq or the run's size not a counter.
-- Every answer but an error that is read and not written ('' for a node added already, a
-- refusal) writes nothing but a no-op (HDEL of the nodes' field '', not replicated) first, so
-- that a replica (a master demoted by a failover, still answering from its old data) refuses
-- the call (READONLY) instead of answering for a run the new master may hold otherwise; an
-- add pays nothing for it.
--@include workflows
--@include types
--@include wfids
local run, node = ARGV[1], ARGV[2]
local a = tonumber(ARGV[7])
if not is_priority(tonumber(ARGV[4])) or not is_whole(a) or a < 0 or 7 + a > #ARGV then
  return redis.error_reply('errands: wf_add: priority or count of after nodes is not a whole '
    .. 'number (in -1000..1000 for a priority): ' .. tostring(ARGV[4]) .. ', ' .. tostring(ARGV[7]))
end
if #ARGV - 7 >= WF_MAX_SIZE then  -- (before any loop over them: bounded work)
  return redis.error_reply('errands: wf_add: ' .. (#ARGV - 7) .. ' after and before nodes: the '
    .. 'run would hold more than ' .. WF_MAX_SIZE .. ' members, edges and callbacks in all')
end
if not wf_spec(ARGV[6]).n then  -- (read by the release: nil raised after the first write)
  return redis.error_reply('errands: wf_add: the spec of node ' .. tostring(node) .. ' names no '
    .. 'job name ("n"): it was not added')
end
if not wf_node_ok(node) then
  return redis.error_reply('errands: wf_add: node id "' .. tostring(node) .. '" holds whitespace, '
    .. 'a control character or one of "\\{}:<>!: it was not added')
end
-- every key it writes is checked first (lib/wfkeys.lua wf_unfit: the run's, and the namespace's
-- a ready member goes to, seq a counter; workflow_of; the run's size a counter): one of another
-- type raised after the member's membership, open mark and spec were written (half added)
local outcome = 'node ' .. node .. ' was not added'
local bad = wrong_type(function(j) return ({'HLEN', [9] = 'HLEN', [10] = 'ZCARD'})[j] end, outcome, 10)
  or wf_unfit(KEYS[1], run, outcome)
  or not_hash_counter(KEYS[2], {'size'}, outcome)
if bad then
  return bad
end
-- answers read and not written (added already, or why not) go through lib/types.lua's
-- unwritten on the nodes' hash (no node id is '': wf_node_ok; KEYS[6] read as a hash below)
local function refused(reply)
  return unwritten('HDEL', KEYS[6], reply)
end
local stored = redis.call('HGET', KEYS[6], node)
if stored then
  -- added already with this spec (its dependencies since grown at most: wf_add appends) and
  -- before every given node: a re-sent call, or the same add again, gives the same answer
  local head = string.sub(ARGV[6], 1, -3)
  local same = stored == ARGV[6] or (string.sub(stored, 1, #head) == head
    and string.sub(stored, -2) == ']}'
    and (string.sub(head, -1) == '[' or string.sub(stored, #head + 1, #head + 1) == ','))
  for i = 8 + a, #ARGV do
    same = same and redis.call('ZSCORE', KEYS[5], node .. '>' .. ARGV[i]) ~= false
  end
  if same then
    return refused('')
  end
  return refused('node ' .. node .. ' is already in the workflow (with another definition)')
end
local id = run .. '.' .. node
if redis.call('HEXISTS', KEYS[9], id) == 1 or redis.call('ZSCORE', KEYS[10], id)
    or redis.call('EXISTS', KEYS[11]) == 1 then
  return refused('job id ' .. id .. ' is taken: node ' .. node .. ' was not added')
end
-- (wfidx's type checked by wf_unfit above, and it holds this run when the add can be made: no
-- ZCARD of it asked again)
local other = wf_ids_taken(wf_keys(KEYS[1], run).P .. 'wfidx', KEYS[1], {id}, outcome, run, true)
if other.err then
  return other
elseif other[1] then
  return refused('job id ' .. id .. ' is taken by a member of another workflow run: node ' .. node
    .. ' was not added')
end
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'running' or redis.call('HEXISTS', KEYS[2], 'cancel') == 1 then
  return refused('workflow run ' .. run .. ' is not running (' .. (status or 'unknown') .. ')')
end
-- the run grown past WF_MAX_SIZE members, edges and callbacks in all (lib/workflows.lua): the
-- member, and an edge to each after and before node at most
local size = tonumber(redis.call('HGET', KEYS[2], 'size') or '0') + redis.call('ZCARD', KEYS[5])
  + redis.call('HEXISTS', KEYS[6], '!on_success') + redis.call('HEXISTS', KEYS[6], '!on_failure')
if size + 1 + #ARGV - 7 > WF_MAX_SIZE then
  return refused('adding node ' .. node .. ' would grow workflow run ' .. run .. ' past '
    .. WF_MAX_SIZE .. ' members, edges and callbacks in all (it holds ' .. size .. ')')
end
local spec = wf_spec(ARGV[6])
local edges = {}
for i = 8, 7 + a do
  local dep = ARGV[i]
  if redis.call('HEXISTS', KEYS[6], dep) == 0 then
    return refused('unknown node ' .. dep)
  end
  if redis.call('SISMEMBER', KEYS[3], dep) == 1 then
    edges[#edges + 1] = dep
  elseif spec.f == 'fail' then
    local res = redis.call('HGET', KEYS[8], dep)
    if res and string.sub(res, 1, 10) ~= '{"s":"ok",' then
      return refused('dependency ' .. dep .. ' did not succeed')
    end
  end
end
for i = 8 + a, #ARGV do
  if redis.call('HEXISTS', KEYS[7], ARGV[i]) == 0 then
    return refused('node ' .. ARGV[i] .. ' is not waiting for its dependencies (unknown, running '
      .. 'or ended)')
  end
end
-- a before node upstream of an after node (through the edges still to wait on: those of nodes
-- still waiting) would close a cycle, which no member could ever leave: search upstream of the
-- after nodes, at most CYCLE_EDGES edges read, and refuse past that
local CYCLE_EDGES = 10000
if #edges > 0 and 8 + a <= #ARGV then
  local target, seen, from, todo, left = {}, {}, {}, {}, CYCLE_EDGES
  for i = 8 + a, #ARGV do
    target[ARGV[i]] = true
  end
  for _, dep in ipairs(edges) do
    if not seen[dep] then
      seen[dep] = true
      todo[#todo + 1] = dep
    end
  end
  local i = 1
  while i <= #todo do
    local c = todo[i]
    i = i + 1
    if target[c] then
      local path = {node, c}
      while from[c] do
        c = from[c]
        path[#path + 1] = c
      end
      path[#path + 1] = node
      return refused('adding node ' .. node .. ' would close a cycle: '
        .. table.concat(path, ' -> '))
    end
    -- (the in edges of a node that no longer waits are none, or left for the work list's
    -- removal: not followed, as in wf_walk, and not counted)
    local ins = {}
    if redis.call('HEXISTS', KEYS[7], c) == 1 then
      ins = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. c .. '<', '(' .. c .. '=', 'LIMIT', 0, left + 1)
    end
    if #ins > left then
      return refused('cannot check that adding node ' .. node .. ' closes no cycle: more than '
        .. CYCLE_EDGES .. ' dependency edges upstream of its after nodes (add it with fewer after'
        .. ' or before nodes)')
    end
    left = left - #ins
    for _, e in ipairs(ins) do
      local p = string.sub(e, #c + 2)
      if not seen[p] then
        seen[p] = true
        from[p] = c
        todo[#todo + 1] = p
      end
    end
  end
end
local W = wf_keys(KEYS[1], run)
redis.call('HSET', KEYS[1], id, run)
redis.call('SADD', W.open, node)
redis.call('HSET', W.nodes, node, ARGV[6])
redis.call('HINCRBY', W.meta, 'size', 1)
for _, dep in ipairs(edges) do
  redis.call('ZADD', W.inn, 0, node .. '<' .. dep)
  redis.call('ZADD', W.out, 0, dep .. '>' .. node)
end
for i = 8 + a, #ARGV do
  local b = ARGV[i]
  redis.call('ZADD', W.inn, 0, b .. '<' .. node)
  redis.call('ZADD', W.out, 0, node .. '>' .. b)
  -- its spec ends with its dependencies, '"d":[...]}': the new one is appended
  local head = string.sub(redis.call('HGET', W.nodes, b), 1, -3)
  local sep = ','
  if string.sub(head, -1) == '[' then sep = '' end
  redis.call('HSET', W.nodes, b, head .. sep .. '"' .. node .. '"]}')
end
if #edges == 0 then
  wf_queue(W, id, ARGV[3], tonumber(ARGV[4]), ARGV[5], true, wf_spec(ARGV[6]).k)
else
  redis.call('HSET', W.env, node, ARGV[5])
end
return ''
