-- wf_enqueue: store a whole workflow run at once (all or nothing: one script). Members without
-- dependencies go to their queues, the others wait in the run's `env` hash until their last
-- dependency ends (see lib/workflows.lua). Idempotent: a run already stored (or lingering) is
-- not stored again, nor is one whose member or callback job ids are taken (below). Work is
-- linear in the size of the graph (validated by the caller), at most WF_MAX_SIZE members, edges
-- and callbacks in all (lib/workflows.lua: 50,000, workflows/graph.py MAX_SIZE; docs/workflows.md
-- has what a call of that size costs Redis).
-- KEYS[1] jobs   KEYS[2] priorities   KEYS[3] seq   KEYS[4] names   KEYS[5] idle
-- KEYS[6] workflow_of (HASH member id -> run)   KEYS[7] the run (HASH)   KEYS[8] its open set
-- KEYS[9] its in edges   KEYS[10] its out edges   KEYS[11] its nodes   KEYS[12] its envelopes
-- KEYS[13] its outcomes   KEYS[14] ended (tombstones, lib/jobstate.lua)
-- KEYS[15..] the queue of each job name with a member ready at once
-- ARGV[1] run id   ARGV[2] workflow name   ARGV[3] linger ms   ARGV[4] N members
-- ARGV[5] E edges   ARGV[6] C callbacks
-- ARGV[7..] six per member: node id, job name, 1 if ready at once else 0, priority,
--           envelope, spec JSON; then two per edge: parent node, child node; then three per
--           callback: on_success | on_failure, envelope, spec JSON
-- Returns 1 when stored, 0 when the run exists already, or when it does not but the job id of
-- one of its members or callbacks is taken: stored (waiting, running, dead, cancelled), its
-- tombstone in `ended` or its result record there (`done:<id>`, built from the prefix as
-- lib/workflows.lua builds the keys it writes), as enqueue.lua refuses an id, or the id of a
-- member or callback of another run still stored (lib/wfids.lua, its index `wfidx` built from
-- the prefix too). So a re-sent call
-- (redis-py, after a lost reply) that comes once the run has ended and its linger (1 ms at
-- least) is over stores nothing: its members' ids are there, at least an hour after they ended
-- (the tombstones of the latest 100,000 ended jobs; a result record for its result_ttl). The
-- same id used again on purpose is refused the same while they are (docs/workflows.md).
-- An error, before any write, when the arguments do not fit (more than WF_MAX_SIZE members,
-- edges and callbacks; counts not whole numbers, 'nan' and 'inf' included, a linger not a
-- whole number of ms in 0..366 days spelt as PEXPIRE reads it: not '0100'; a priority not
-- whole in -1000..1000; a node id with whitespace, a control character or one of "\{}:<>!,
-- lib/workflows.lua wf_node_ok; a member's or callback's spec without its job name "n"), a key
-- of another type, or seq is not a counter.
-- The answer 0 writes nothing but a no-op (HDEL of the run's field '', not replicated) first,
-- so that a replica (a master demoted by a failover, still answering from its old data)
-- refuses the call (READONLY) instead of saying "exists" of a run the new master may lack; a
-- call that stores its run pays nothing for it. (The run's hash of another type: an error,
-- where it answered 0.)
--@include workflows
--@include types
--@include wfids
-- (lib/chunked's read_chunked, below: included by lib/wfids)
-- the run stored already (read, nothing written): lib/types.lua's unwritten (a run's hash has no
-- field ''): a demoted master's data may hold a run the new master lacks
local there = redis.pcall('HLEN', KEYS[7])
if type(there) == 'table' then
  return wrong_key(KEYS[7], 'no workflow run was stored')
elseif there > 0 then
  return unwritten('HDEL', KEYS[7], 0)
end
local run = ARGV[1]
local W = wf_keys(KEYS[6], run)
local n, e, c = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if not (is_whole(n) and is_whole(e) and is_whole(c) and wf_linger_ok(ARGV[3])) or n < 0 or e < 0
    or c < 0 or #ARGV ~= 6 + 6 * n + 2 * e + 3 * c then
  return redis.error_reply('errands: wf_enqueue: counts, linger or arguments do not fit')
end
if n + e + c > WF_MAX_SIZE then  -- (before any loop over them: bounded work)
  return redis.error_reply('errands: wf_enqueue: ' .. n .. ' members, ' .. e .. ' edges and ' .. c
    .. ' callbacks are more than ' .. WF_MAX_SIZE .. ' in all: no workflow run was stored')
end
for i = 1, n do
  if not is_priority(tonumber(ARGV[6 + 6 * (i - 1) + 4])) then
    return redis.error_reply('errands: wf_enqueue: priority of member ' .. ARGV[6 + 6 * (i - 1) + 1]
      .. ' is not a whole number in -1000..1000: ' .. ARGV[6 + 6 * (i - 1) + 4])
  end
  if not wf_node_ok(ARGV[6 + 6 * (i - 1) + 1]) then
    return redis.error_reply('errands: wf_enqueue: node id "' .. ARGV[6 + 6 * (i - 1) + 1]
      .. '" holds whitespace, a control character or one of "\\{}:<>!: no workflow run was stored')
  end
  -- (the name a release reads from the spec: nil raised in the script ending its last
  -- dependency, after that script's first write)
  if not wf_spec(ARGV[6 + 6 * (i - 1) + 6]).n then
    return redis.error_reply('errands: wf_enqueue: the spec of member ' .. ARGV[6 + 6 * (i - 1) + 1]
      .. ' names no job name ("n"): no workflow run was stored')
  end
end
for i = 1, c do
  if not wf_spec(ARGV[6 + 6 * n + 2 * e + 3 * (i - 1) + 3]).n then
    return redis.error_reply('errands: wf_enqueue: the spec of a callback names no job name ("n"):'
      .. ' no workflow run was stored')
  end
end
local TYPES = {'HLEN', 'HLEN', false, 'SCARD', 'SCARD', 'HLEN', 'HLEN', 'SCARD', 'ZCARD', 'ZCARD',
  'HLEN', 'HLEN', 'HLEN', 'ZCARD'}  -- then the queues; seq: a counter (below)
local bad = wrong_type(function(j) return j > #TYPES and 'ZCARD' or TYPES[j] end,
  'no workflow run was stored')
  or wf_unfit(KEYS[6], nil, 'no workflow run was stored')
if bad then
  return bad
end
-- the job ids of its members and callbacks, any of them taken (read, nothing written): one
-- EXISTS of their result records, one HMGET of jobs, one ZMSCORE of ended per 1,000
local ids = {}
for i = 1, n do
  ids[i] = run .. '.' .. ARGV[6 + 6 * (i - 1) + 1]
end
for i = 1, c do
  ids[n + i] = run .. '!' .. ARGV[6 + 6 * n + 2 * e + 3 * (i - 1) + 1]
end
for s = 1, #ids, CHUNK do
  local part, done = {unpack(ids, s, math.min(#ids, s + CHUNK - 1))}, {}
  for i, id in ipairs(part) do
    done[i] = W.P .. 'done:' .. id
  end
  local taken = redis.call('EXISTS', unpack(done)) > 0
  for _, v in ipairs(taken and {} or read_chunked('HMGET', KEYS[1], part)) do
    taken = taken or v ~= false
  end
  for _, v in ipairs(taken and {} or read_zmscore(KEYS[14], part)) do
    taken = taken or v ~= false
  end
  if taken then
    return unwritten('HDEL', KEYS[7], 0)
  end
end
-- or a member's or callback's of another run still stored (run `a` with node `b.c`, run `a.b`
-- with node `c`: a waiting member is in no job hash; lib/wfids.lua, all at once: one ZMSCORE
-- per 1,000 runs they may be members of, one HMGET per run found per 1,000 of its nodes). An
-- id whose only split is this run's (a run id without '.', a node id without '.', a callback)
-- is not looked at: one string.find per member (a lookup of each, one call of wfids per id as
-- it was, cost a run at the cap 10-25% more: bench/workflow_size.py)
local asked, dotted = {}, string.find(run, '.', 1, true)
for _, id in ipairs(ids) do
  if dotted or string.find(id, '.', #run + 2, true) then
    asked[#asked + 1] = id
  end
end
if #asked > 0 then
  local taken = wf_ids_taken(W.P .. 'wfidx', KEYS[6], asked, 'no workflow run was stored', run)
  if taken.err then
    return taken
  elseif next(taken) then
    return unwritten('HDEL', KEYS[7], 0)
  end
end
local now = wf_now()
redis.call('HSET', W.meta, 'name', ARGV[2], 'status', 'running', 'created', now,
  'linger', ARGV[3], 'size', n)
wf_trim(W.P, now)
redis.call('ZREM', W.P .. 'wfexp', run)  -- (an earlier run of this id, lingered out)
redis.call('ZADD', W.P .. 'wfidx', now, run)
local o = 6
local ready = {}  -- the job names of the members ready at once
W.evs = {}  -- (their `enqueued` events published together: wf_events_flush)
for _ = 1, n do
  local node, name, now, prio, env, spec = ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5], ARGV[o + 6]
  o = o + 6
  local id = run .. '.' .. node
  redis.call('HSET', KEYS[6], id, run)
  redis.call('SADD', W.open, node)
  redis.call('HSET', W.nodes, node, spec)
  if now == '1' then
    wf_queue(W, id, name, tonumber(prio), env, false, wf_spec(spec).k)
    ready[name] = true
  else
    redis.call('HSET', W.env, node, env)
  end
end
for _ = 1, e do
  redis.call('ZADD', W.inn, 0, ARGV[o + 2] .. '<' .. ARGV[o + 1])
  redis.call('ZADD', W.out, 0, ARGV[o + 1] .. '>' .. ARGV[o + 2])
  o = o + 2
end
for _ = 1, c do
  redis.call('HSET', W.env, '!' .. ARGV[o + 1], ARGV[o + 2])
  redis.call('HSET', W.nodes, '!' .. ARGV[o + 1], ARGV[o + 3])
  o = o + 3
end
wf_events_flush(W)
for name in pairs(ready) do  -- one idle pool of each name woken (lib/workflows.lua)
  wf_wake(W.P, name)
end
if n == 0 then
  wf_finish(W)
end
return 1
