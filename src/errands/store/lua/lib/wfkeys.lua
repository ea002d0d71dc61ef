-- lib/wfkeys: the keys of a workflow run, built from the `wfof` key a script declares, and their
-- checks before a script's first write (included by `--@include wfkeys` from lib/workflows.lua,
-- after lib/types.lua; the keys are listed there).
-- the keys of run `run`, from `wfof` = <prefix>wfof
local function wf_keys(wfof, run)
  local P = string.sub(wfof, 1, #wfof - 4)
  local m = P .. 'wf:' .. run
  return {P = P, run = run, wfof = wfof, meta = m, open = m .. ':open', inn = m .. ':in',
    out = m .. ':out', nodes = m .. ':nodes', env = m .. ':env', res = m .. ':res'}
end

-- the first key of run W (wf_keys) of another type than its part holds, or nil: before a
-- script's first write, for a script that leaves that run alone (wf_cascade.lua) or refuses
-- the call (wf_unfit)
local function wf_run_unfit(W)
  return first_unfit({W.meta, W.open, W.inn, W.out, W.nodes, W.env, W.res},
    {'HLEN', 'SCARD', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', 'HLEN'})
end

-- the keys this lib writes that no script declares (built from the prefix: the namespace's, and
-- run `run`'s when given), checked before a script's first write, as lib/types.lua checks its
-- KEYS: an error reply naming the first of another type (seq: not a counter), saying
-- `outcome`; nil when all fit (`run_only`: the run's keys only). The queues of the members a walk
-- releases are not known before it: wf_queue checks them, and parks a member it cannot queue.
local function wf_unfit(wfof, run, outcome, run_only)
  local WF_NS = {seq = 'GET', jobs = 'HLEN', prio = 'HLEN', names = 'SCARD', idle = 'SCARD',
    part = 'HLEN', wfwork = 'ZCARD', wfexp = 'ZCARD', wfidx = 'ZCARD', dead = 'ZCARD',
    errors = 'HLEN'}
  local W = wf_keys(wfof, run or '')
  local function bad(key, cmd)
    local r = redis.pcall(cmd, key)
    if type(r) == 'table' and r.err then
      return wrong_key(key, outcome)
    end
    if cmd == 'GET' and r and not is_int(r) then  -- (lib/types.lua: as INCR reads it)
      return redis.error_reply('errands: ' .. key .. ' holds ' .. r .. ', not a counter: ' .. outcome)
    end
  end
  for suffix, cmd in pairs(run_only and {} or WF_NS) do
    local e = bad(W.P .. suffix, cmd)
    if e then
      return e
    end
  end
  if not run then
    return nil
  end
  local key = wf_run_unfit(W)
  return key and wrong_key(key, outcome) or nil
end

-- wf_unfit for job `id`'s run, when it is a member (nothing else: one HGET); `seen` (a table
-- kept over the jobs of one call, optional): each run, and the namespace's keys, checked once
local function wf_unfit_of(wfof, id, outcome, seen)
  local run = redis.call('HGET', wfof, id)
  if not run or (seen and seen[run]) then
    return nil
  end
  local bad = wf_unfit(wfof, run, outcome, seen and seen[''])
  if seen then
    seen[run], seen[''] = true, true
  end
  return bad
end
