-- lib/wfqueue: a workflow member or callback going on its queue, as enqueue does (included by
-- lib/workflows.lua, which describes a run's keys); `W` is a run's keys (lib/wfkeys.lua).
--@include prio
--@include wake
--@include types
--@include wfkeys
--@include wfevents

local function wf_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- the fields of a node's spec the scripts need (job name, policy, priority), read without
-- decoding its list of dependencies (10,000 long for a wide fan-in). Safe: a job name holds no
-- quote, so the first "n", "f" and "p" keys found are the spec's own.
local function wf_spec(raw)
  local k = string.match(raw, '"k":"(%x*)"')  -- the partition, hex encoded (members.py)
  if k then
    k = string.gsub(k, '%x%x', function(c) return string.char(tonumber(c, 16)) end)
  end
  return {n = string.match(raw, '"n":"([^"]*)"'), f = string.match(raw, '"f":"(%a+)"'),
    p = tonumber(string.match(raw, '"p":(%-?%d+)') or '0'), k = k}
end

-- wake one idle pool serving job name `name` (lib/wake.lua), as enqueue does; its idle set is
-- no declared key: one of another type wakes every idle pool instead (nothing raises)
local function wf_wake(P, name)
  local idle = P .. 'idle:' .. name
  local r = redis.pcall('ZCARD', idle)
  if type(r) == 'table' then
    if redis.call('SCARD', P .. 'idle') > 0 then
      redis.call('PUBLISH', P .. 'wake', 'workflow')
    end
  elseif r > 0 then
    wake_one(idle, P .. 'wake:', false)
  end
end

-- store job `id` and put it on its queue as enqueue does; wakes one idle pool of its name when
-- `wake`. With a
-- partition `part`, it is indexed by it as lib/limits.lua's lim_queued does (the same entry:
-- "<partition>\0<queue score + 2^52, 16 digits>\0<id>" in pq:<name>; a turn in pready:<name>)
-- A member whose queue (or partition index) holds another type, or whose `name` is nil (its
-- spec has no "n"), is parked in the dead set with an error saying so (retried from there once
-- the key is repaired), not lost half-queued (nor after an error reply): with its priority and
-- partition stored as for a queued one, and its name in `names` when it has one (a retry from
-- the dead set, move.lua, queues it with them and the name its caller gives). Returns true when queued (its `enqueued` event published:
-- lib/wfevents.lua), false when parked (its `dead` event, with the error stored: in the dead
-- set, it has not ended in its run).
local function wf_queue(W, id, name, prio, env, wake, part)
  local P = W.P
  redis.call('HSET', P .. 'jobs', id, env)
  if prio ~= 0 then
    redis.call('HSET', P .. 'prio', id, prio)
  end
  if part then
    redis.call('HSET', P .. 'part', id, part)
  end
  -- (no job name: its spec in the run lacks "n", written by hand or by an older version; wf_add
  -- and wf_enqueue refuse such a spec. SADD of nil raised here, after the caller's writes)
  local err = not name and '{"error":"its spec in the run holds no job name"}'
  if name then
    redis.call('SADD', P .. 'names', name)
    for _, key in ipairs({P .. 'q:' .. name, part and P .. 'pq:' .. name, part and P .. 'pready:' .. name}) do
      local r = key and redis.pcall('ZCARD', key)
      if type(r) == 'table' and r.err then
        err = '{"error":"its queue holds another type"}'
        break
      end
    end
  end
  if err then
    redis.call('HSET', P .. 'errors', id, err)
    redis.call('ZADD', P .. 'dead', wf_now(), id)
    wf_event(W, 'dead', id, name, ',"error":' .. err)
    return false
  end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'q:' .. name, queue_score(seq, prio), id)
  if part then
    local score = string.format('%016.0f', queue_score(seq, prio) + 4503599627370496)
    redis.call('ZADD', P .. 'pq:' .. name, 0, part .. '\0' .. score .. '\0' .. id)
    if not redis.call('ZSCORE', P .. 'pready:' .. name, part) then
      redis.call('ZADD', P .. 'pready:' .. name, redis.call('INCR', P .. 'seq'), part)
    end
  end
  wf_event(W, 'enqueued', id, name)
  if wake then
    wf_wake(P, name)
  end
  return true
end
