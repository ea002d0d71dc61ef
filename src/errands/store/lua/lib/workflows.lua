-- lib/workflows: the workflows (see src/errands/workflows/ and docs/workflows.md), included by
-- `--@include workflows` into the scripts that end a job's life (ack, settle, reap, cancel,
-- move) and the workflow scripts. A job outside any workflow costs one HGET (wf_end).
-- A run's keys, and the namespace keys a released member goes to (jobs, its queue, ...), are
-- built here from the prefix of the `wfof` key the including script declares: all under the
-- namespace's hash tag, so in the slot of the script's declared keys (also on a cluster).
--   wf:<run>        HASH  name, status (running|succeeded|failed|cancelled), created,
--                         finished, linger (ms), size, failed (first failed node), cancel
--   wf:<run>:open   SET   members not ended
--   wf:<run>:in     ZSET  remaining edges "child<parent" (score 0, ranged by lex per child)
--   wf:<run>:out    ZSET  edges "parent>child" (ranged by lex per parent)
--   wf:<run>:nodes  HASH  node -> spec JSON {n: job name, f: policy, p: priority, d: deps};
--                         "!on_success" / "!on_failure" the callbacks'
--   wf:<run>:env    HASH  node -> envelope of a member still waiting for its dependencies;
--                         "!on_success" / "!on_failure" the callbacks' until one is enqueued
--   wf:<run>:res    HASH  node -> outcome JSON {s: ok|failed|cancelled, r: result | e: error}
--   wfidx / wfexp   ZSETs run -> stored at / linger over (ms): the runs to list
-- Members are the jobs "<run>.<node>", callbacks "<run>!on_success" / "<run>!on_failure".
--   wfwork          ZSET  "<status> <node> <cursor> <run>" -> ms: members whose dependents are
--                         still to walk, after the child <cursor> ('' from the first); a
--                         member's end walks WF_STEP of them, wf_cascade.lua the rest.
--                         Status "edges" (cursor ''): a member ended while it waited whose
--                         own in edges are still to remove (WF_STEP go with its end)
-- Every consequence sits behind an edge whose removal returns 1: a member's end is handled
-- once (HDEL of its wfof field, or of its envelope while it waits), a dependent is released
-- once its last "child<parent" edge is removed (ZREM == 1, then no edge of it left), a
-- callback is enqueued once (HDEL of its envelope), the run finishes once (its status leaves
-- 'running'). A walk left on the work list holds its edges: the dependents it has not
-- reached still wait on them (and the run cannot finish), so where it resumes changes
-- nothing but when.
--@include types
--@include wfkeys
--@include wfqueue
-- dependents one member's end walks in its script (the rest: the work list), and that one
-- script call walks at most (an ack of many members; a wf_cascade.lua call)
local WF_STEP, WF_CALL = 200, 1000
-- the longest linger (ms; workflows/graph.py's MAX_LINGER, 366 days): wf_enqueue refuses a
-- longer one, and wf_finish reads a stored linger that is not a whole number up to it (data of
-- an older version, or written by hand) as the default, 24 h: PEXPIRE refused 10^20 ms after
-- the first write of the script that ended the run's last member. Spelt as PEXPIRE reads it
-- (lib/types.lua's is_int): it refused '0100' after wf_finish's DEL.
local WF_MAX_LINGER, WF_LINGER = 31622400000, '86400000'
-- the most members, dependency edges and callbacks a run holds in all (workflows/graph.py's
-- MAX_SIZE): wf_enqueue stores a run in one call, linear in its size (docs/workflows.md: what
-- 50,000 cost Redis), and refuses a larger one before any loop over it; wf_add refuses to grow a
-- run past it (its size, ZCARD of its out edges, its callbacks)
local WF_MAX_SIZE = 50000
local function wf_linger_ok(s)
  return is_int(s, 0, WF_MAX_LINGER)
end
-- wf_node_ok(node): a node id the work list's items ("<status> <node> <cursor> <run>", parsed
-- at spaces) and the edges ("child<parent", "parent>child") can be read back from: not empty,
-- no whitespace, control character, quote, backslash, brace, ':', '<', '>' or '!' (as
-- workflows/graph.py check_node_id, which also bounds its length: 1-120 characters)
local function wf_node_ok(node)
  return type(node) == 'string' and node ~= '' and not string.find(node, '[%s%c"\\{}:<>!]')
end
-- walked so far in this script call; in edges of members ended while they waited, removed in
-- this call (--@percall: made anew by each call of a library, store/fnlib.py)
local WF_WALKED = {0}  --@percall
local WF_EDGES = {0}  --@percall

-- runs whose linger ended leave the indexes of runs (at most 16 per call)
local function wf_trim(P, now)
  local gone = redis.call('ZRANGEBYSCORE', P .. 'wfexp', '-inf', now, 'LIMIT', 0, 16)
  if #gone > 0 then
    redis.call('ZREM', P .. 'wfexp', unpack(gone))
    redis.call('ZREM', P .. 'wfidx', unpack(gone))
  end
end

-- a waiting member whose last dependency ended goes to its queue (the caller wakes the pools);
-- true when it did (not when it was parked: no pool to wake for it)
local function wf_release(W, node, spec)
  local env = redis.call('HGET', W.env, node)
  if env and redis.call('HDEL', W.env, node) == 1 then
    return wf_queue(W, W.run .. '.' .. node, spec.n, spec.p, env, false, spec.k)
  end
  return false
end

-- remove at most `max` of the in edges of `node`, a member that no longer waits (counted in
-- WF_EDGES); true when none is left. An edge left meanwhile changes nothing: its parent's walk
-- removes it and finds no envelope to release
local function wf_unlink(W, node, max)
  local edges = {}
  if max > 0 then
    edges = redis.call('ZRANGEBYLEX', W.inn, '[' .. node .. '<', '(' .. node .. '=', 'LIMIT', 0, max + 1)
  end
  local n = math.min(#edges, max)
  if n > 0 then
    redis.call('ZREM', W.inn, unpack(edges, 1, n))
    WF_EDGES[1] = WF_EDGES[1] + n
  end
  return max > 0 and #edges <= max
end

-- end a member that waits for its dependencies without running it; false when it does not
-- wait (released: queued or running, ended, a callback, unknown). The edge is its envelope: a
-- released member still has its membership, but no envelope. Its in edges go, WF_STEP of them
-- here (WF_CALL in one script call), the rest from the work list (a 10,000-way fan-in)
local function wf_drop_held(W, node)
  if string.sub(node, 1, 1) == '!' or redis.call('HDEL', W.env, node) == 0 then
    return false
  end
  redis.call('HDEL', W.wfof, W.run .. '.' .. node)
  if not wf_unlink(W, node, math.min(WF_STEP, WF_CALL - WF_EDGES[1])) then
    redis.call('ZADD', W.P .. 'wfwork', wf_now(), 'edges ' .. node .. '  ' .. W.run)
  end
  return true
end

-- every member ended: the outcome, the callback it calls for (once), then the linger
local function wf_finish(W)
  if redis.call('HGET', W.meta, 'status') ~= 'running' then
    return
  end
  local status = 'succeeded'
  if redis.call('HEXISTS', W.meta, 'cancel') == 1 then
    status = 'cancelled'
  elseif redis.call('HEXISTS', W.meta, 'failed') == 1 then
    status = 'failed'
  end
  local now = wf_now()
  redis.call('HSET', W.meta, 'status', status, 'finished', now)
  local cb = ({succeeded = '!on_success', failed = '!on_failure'})[status]
  if cb then
    local env = redis.call('HGET', W.env, cb)
    local spec = redis.call('HGET', W.nodes, cb)
    if env and spec and redis.call('HDEL', W.env, cb) == 1 then
      spec = wf_spec(spec)
      wf_queue(W, W.run .. cb, spec.n, spec.p, env, true)
    end
  end
  redis.call('DEL', W.env, W.inn)
  local linger = redis.call('HGET', W.meta, 'linger')
  if not wf_linger_ok(linger) then
    linger = WF_LINGER
  end
  for _, key in ipairs({W.meta, W.open, W.out, W.nodes, W.res}) do
    redis.call('PEXPIRE', key, linger)
  end
  redis.call('ZADD', W.P .. 'wfexp', now + tonumber(linger), W.run)
  wf_trim(W.P, now)
end

-- member `n` ended with `st` ok | failed | cancelled (`val`: its result or error as JSON):
-- record it; a sink that did not succeed fails the run. True when it has dependents to walk
local function wf_record(W, n, st, val)
  redis.call('SREM', W.open, n)
  if st == 'ok' then
    redis.call('HSET', W.res, n, '{"s":"ok","r":' .. val .. '}')
  else
    redis.call('HSET', W.res, n, '{"s":"' .. st .. '","e":' .. val .. '}')
  end
  if #redis.call('ZRANGEBYLEX', W.out, '[' .. n .. '>', '(' .. n .. '?', 'LIMIT', 0, 1) > 0 then
    return true
  end
  if st ~= 'ok' then
    redis.call('HSETNX', W.meta, 'failed', n)
  end
  return false
end

-- member `node` (of job name `name`) ended without running, while it waited for its
-- dependencies (wf_drop_held): recorded cancelled (`why` its error JSON) with its `cancelled`
-- event (lib/wfevents.lua). True when it has dependents to walk
local function wf_dropped(W, node, name, why)
  wf_event(W, 'cancelled', W.run .. '.' .. node, name)
  return wf_record(W, node, 'cancelled', why)
end

-- walk at most `max` dependents of member `n` (ended with `st`), those after `cursor` (a child,
-- or '' from the first): the edge to each goes; one whose last edge that was is released, one
-- with policy "fail" after a failure (any, once the run is being cancelled) ends without
-- running, and its own dependents are appended to `todo`. A failure handed to a "fail"
-- dependent fails the run (only one still waiting: its envelope is in the run). Returns how
-- many it walked, and the last when more may follow.
local function wf_walk(W, n, st, cursor, max, todo)
  local from = '[' .. n .. '>'
  if cursor ~= '' then
    from = '(' .. n .. '>' .. cursor
  end
  local outs = redis.call('ZRANGEBYLEX', W.out, from, '(' .. n .. '?', 'LIMIT', 0, max)
  local cancelling = redis.call('HEXISTS', W.meta, 'cancel') == 1
  local counted, dropped = false, {}
  for _, e in ipairs(outs) do
    local c = string.sub(e, #n + 2)
    local raw = redis.call('HGET', W.nodes, c)
    -- (an edge of a dependent that no longer waits, left for the work list's removal, goes
    -- here with no effect: no failure mark, nothing to drop or release)
    if raw and redis.call('ZREM', W.inn, c .. '<' .. n) == 1 and redis.call('HEXISTS', W.env, c) == 1 then
      local spec = wf_spec(raw)
      local bad = st ~= 'ok' and spec.f == 'fail'
      if bad and not counted then
        counted = true
        redis.call('HSETNX', W.meta, 'failed', n)
      end
      if bad or cancelling then
        if wf_drop_held(W, c) then
          local why = 'the workflow was cancelled'
          if bad then why = 'dependency ' .. n .. ' ' .. st end
          dropped[#dropped + 1] = {c, '{"error":"' .. why .. '","node":"' .. n .. '"}', spec.n}
        end
      elseif #redis.call('ZRANGEBYLEX', W.inn, '[' .. c .. '<', '(' .. c .. '=', 'LIMIT', 0, 1) == 0 then
        if wf_release(W, c, spec) then
          W.released = W.released or {}
          W.released[spec.n] = true
        end
      end
    end
  end
  for _, d in ipairs(dropped) do  -- (after the page: as a walk of every edge at once did)
    if wf_dropped(W, d[1], d[3], d[2]) then
      todo[#todo + 1] = {d[1], 'cancelled', ''}
    end
  end
  if #outs < max then
    return #outs, nil
  end
  return #outs, string.sub(outs[#outs], #n + 2)
end

-- walk the dependents of the members in `todo` ({node, status, cursor} of run W), at most
-- `budget` of them (and never more than WF_CALL in one script call); what is left goes to the
-- work list, `wfwork` (continued by wf_cascade.lua). Returns how many it walked.
local function wf_walk_all(W, todo, budget)
  budget = math.min(budget, WF_CALL - WF_WALKED[1])
  local i, walked = 1, 0
  while i <= #todo and walked < budget do
    local it = todo[i]
    local n, nxt = wf_walk(W, it[1], it[2], it[3], budget - walked, todo)
    walked = walked + n
    if nxt then
      it[3] = nxt
    else
      i = i + 1
    end
  end
  WF_WALKED[1] = WF_WALKED[1] + walked
  if i <= #todo then
    local now = wf_now()
    for j = i, #todo do
      local it = todo[j]
      redis.call('ZADD', W.P .. 'wfwork', now, it[2] .. ' ' .. it[1] .. ' ' .. it[3] .. ' ' .. W.run)
    end
  end
  return walked
end

-- after a walk: wake one idle pool per job name of the members it released (however many),
-- finish the run if none is open
local function wf_after(W)
  for name in pairs(W.released or {}) do
    wf_wake(W.P, name)
  end
  W.released = false
  if redis.call('SCARD', W.open) == 0 then
    wf_finish(W)
  end
end

-- member `node` ended with `status` (`value` its result or error as JSON): record it, walk
-- its dependents (WF_STEP of them here, the rest from the work list), finish the run when no
-- member is left open
local function wf_settle(W, node, status, value)
  if wf_record(W, node, status, value) then
    wf_walk_all(W, {{node, status, ''}}, WF_STEP)
  end
  wf_after(W)
end

-- the hook of the scripts that end a job's life (`status` ok | failed | cancelled, `value` its
-- result or error JSON): nothing but one HGET for a job outside any workflow. A member still
-- waiting for its dependencies (cancelled or destroyed by id) leaves its run's edges with it.
-- Returns true when it ended a member. `run`: the job's run when the caller read it in this call
-- (false: none), else it is read here. `evs`: a list (lib/events.lua's ev_publish_all) the
-- caller publishes at its call's end, where the events of the members it releases or ends go
-- (an ack of many members: one HMGET of `listening` per 1,000), else published here together.
local function wf_end(wfof, id, status, value, run, evs)
  if run == nil then
    run = redis.call('HGET', wfof, id)
  end
  if not run then
    return false
  end
  local W = wf_keys(wfof, run)
  local node = string.sub(id, #run + 2)
  if redis.call('HEXISTS', W.env, node) == 1 then
    if not wf_drop_held(W, node) then
      return false
    end
  elseif redis.call('HDEL', wfof, id) == 0 then
    return false
  end
  if value == nil or value == '' then
    value = 'null'
  end
  W.evs = evs or {}  -- (the members it releases or ends: their events published together)
  wf_settle(W, node, status, value)
  if not evs then
    wf_events_flush(W)
  end
  return true
end
