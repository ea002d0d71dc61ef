-- lib/jobstate: helpers shared by the scripts that end a job's life (included by
-- `--@include jobstate`, see store/scripts.py). A table `k` names the keys, taken from the
-- including script's KEYS: jobs, prio, errors, recov, checkin, cancelreq, att, uniqjob, uniq,
-- uniqexp, ended, ckpt (the checkpoints of iterable jobs, see lib/longwork.lua), and part (the
-- partition of a job, see lib/limits.lua; optional).
-- Tombstones: every job whose life ended is kept in `ended` (id -> ms, Redis clock) so that a
-- re-sent enqueue of the same id stores nothing. At least TOMB_MS long, for the latest TOMB_MAX
-- jobs (memory stays bounded: each call drops at most as many as it adds, plus a few).
local TOMB_MS, TOMB_MAX = 3600000, 100000

local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- tombstones for `ids` (at most a few thousand: unpack), trimming as many old ones
local function tombstone(k, ids, now)
  if #ids == 0 then return end
  local args = {}
  for _, id in ipairs(ids) do
    args[#args + 1] = now
    args[#args + 1] = id
  end
  redis.call('ZADD', k.ended, unpack(args))
  local budget = #ids + 16
  local old = redis.call('ZRANGEBYSCORE', k.ended, '-inf', '(' .. (now - TOMB_MS), 'LIMIT', 0, budget)
  if #old > 0 then
    redis.call('ZREM', k.ended, unpack(old))
  end
  local over = redis.call('ZCARD', k.ended) - TOMB_MAX
  if over > 0 then
    redis.call('ZREM', k.ended, unpack(redis.call('ZRANGE', k.ended, 0, math.min(over, budget) - 1)))
  end
end

-- release the unique lock `id` holds, if any
local function release_unique(k, id)
  local digest = redis.call('HGET', k.uniqjob, id)
  if digest then
    if redis.call('HGET', k.uniq, digest) == id then
      redis.call('HDEL', k.uniq, digest)
      redis.call('ZREM', k.uniqexp, digest)
    end
    redis.call('HDEL', k.uniqjob, id)
  end
end

-- fetch: job `id` starts: the unique lock it holds goes, its unique_of_job record kept as a
-- mark '<lock expiry ms>:<digest>' until the job is settled: given back unstarted, it takes the
-- lock again (unique_unstarted); any other settle or a take-back drops the mark
-- (unique_settled); an end drops it through release_unique (no lock is named by a mark)
local function unique_started(k, id)
  local digest = redis.call('HGET', k.uniqjob, id)
  if not digest then return end
  if redis.call('HGET', k.uniq, digest) == id then
    local expiry = redis.call('ZSCORE', k.uniqexp, digest) or '0'
    redis.call('HDEL', k.uniq, digest)
    redis.call('ZREM', k.uniqexp, digest)
    redis.call('HSET', k.uniqjob, id, expiry .. ':' .. digest)
  else
    redis.call('HDEL', k.uniqjob, id)
  end
end

-- settle, reap: job `id` goes on waiting after a run (a retry, a snooze, a requeue, a take-back
-- from a dead pool) or ends: the mark of its fetch goes (its start released the lock for good)
local function unique_settled(k, id)
  local v = redis.call('HGET', k.uniqjob, id)
  if v and string.find(v, ':', 1, true) then
    redis.call('HDEL', k.uniqjob, id)
  end
end

-- the live job other than `id` holding the lock of `digest` at `now` (ms): one that exists and
-- whose lock is within its expiry; else false (no holder, `id` itself, a holder gone or stale)
local function unique_holder(k, id, digest, now)
  local holder = redis.call('HGET', k.uniq, digest)
  if holder and holder ~= id and redis.call('HEXISTS', k.jobs, holder) == 1
      and tonumber(redis.call('ZSCORE', k.uniqexp, digest) or '0') > now then
    return holder
  end
  return false
end

-- job `id` takes the lock of `digest` until `expiry` (ms), no live other job holding it
-- (unique_holder): a stale holder's record of it goes, and a lock `id` holds on another digest
-- is let go (a job holds one lock)
local function unique_take(k, id, digest, expiry)
  local stale = redis.call('HGET', k.uniq, digest)
  if stale and stale ~= id and redis.call('HGET', k.uniqjob, stale) == digest then
    redis.call('HDEL', k.uniqjob, stale)
  end
  local other = redis.call('HGET', k.uniqjob, id)
  if other and other ~= digest and redis.call('HGET', k.uniq, other) == id then
    redis.call('HDEL', k.uniq, other)
    redis.call('ZREM', k.uniqexp, other)
  end
  redis.call('HSET', k.uniq, digest, id)
  redis.call('HSET', k.uniqjob, id, digest)
  redis.call('ZADD', k.uniqexp, expiry, digest)
end

-- settle: job `id`, fetched ahead and given back before it started, takes its lock again with
-- the expiry it had (a stale lock of another job is taken over, as enqueue_unique does), unless
-- another live job holds it (stored while this one was fetched): it then waits without one.
-- A mark not '<digits>:<digest>' (a digest empty or holding ':': by hand) only goes
local function unique_unstarted(k, id, now)
  local v = redis.call('HGET', k.uniqjob, id)
  local at = v and string.find(v, ':', 1, true)
  if not at then return end
  local expiry, digest = string.sub(v, 1, at - 1), string.sub(v, at + 1)
  if not string.match(expiry, '^%d+$') or #expiry > 16 or digest == ''
      or string.find(digest, ':', 1, true) or unique_holder(k, id, digest, now) then
    redis.call('HDEL', k.uniqjob, id)
    return
  end
  unique_take(k, id, digest, expiry)  -- (its mark, `id`'s record, names no lock: overwritten)
end

-- every field of `ids` (their envelope included) goes; each leaves a tombstone at `now` (none
-- when `now` is nil: a job destroyed on request is forgotten entirely). k.unique, when the
-- caller knows it (true or false), says whether some job holds a unique lock (HLEN uniqjob).
-- k.absent (optional): key -> true for hashes the caller knows hold none of `ids` (absent).
local function forget(k, ids, now)
  if #ids == 0 then return end
  local absent = k.absent or {}
  local hashes = {k.jobs, k.prio, k.errors, k.recov, k.checkin, k.cancelreq, k.att, k.ckpt}
  for i = 1, 8 do  -- (as ipairs: up to the first one not given; no iterator call per hash)
    local h = hashes[i]
    if h == nil then
      break
    end
    if not absent[h] then
      redis.call('HDEL', h, unpack(ids))
    end
  end
  if k.part then
    redis.call('HDEL', k.part, unpack(ids))
  end
  local unique = k.unique
  if unique == nil then
    unique = redis.call('HLEN', k.uniqjob) > 0
  end
  if unique then
    for _, id in ipairs(ids) do
      release_unique(k, id)
    end
  end
  if now then
    tombstone(k, ids, now)
  end
end

-- the number of the attempt a job ends with when it ends outside a run of its handler (an
-- admin delete, a poison burial, a reaper's cancel): h + f + 1 read from its envelope, as
-- `Job.history_attempt` counts; 0 when the envelope is not the JSON of a job called `name`
-- (another serializer, or a corrupt entry)
local function attempt_of(env, name)
  local ok, d = pcall(cjson.decode, env)
  if ok and type(d) == 'table' and d.n == name and type(d.a) == 'table' then
    return (tonumber(d.h) or 0) + (tonumber(d.f) or 0) + 1
  end
  return 0
end

-- an ending outside a settle or an ack: its history record (`status`, attempt from the
-- envelope; none when `history` is false or the envelope is not a JSON job) and its event
-- (while someone listens; `extra` is appended to the event's JSON). Keys and channel in `k`: histdata, listening, events;
-- `histname` is the history of the job's name. `env` is the stored envelope.
local function record_end(k, histname, id, name, status, env, err, now, history, extra)
  local attempt = 0
  if history and env then
    attempt = attempt_of(env, name)
  end
  if attempt > 0 then
    local hk = id .. ':' .. attempt
    redis.call('HSET', k.histdata, hk, '{"id":"' .. id .. '","status":"' .. status .. '","job":'
      .. env .. ',"error":' .. (err or 'null') .. ',"started":null,"finished":' .. now
      .. ',"attempt":' .. attempt .. '}')
    redis.call('ZADD', histname, now, hk)
  end
  if redis.call('EXISTS', k.listening) == 1 then
    ev_publish(k.listening, k.events, id, '{"event":"' .. status .. '","id":"' .. id
      .. '","name":"' .. name .. '"' .. (extra or '') .. '}')
  end
end

-- jobs trimmed from the dead or cancelled set (before `forget`): each is published as
-- `deleted` (reason `trimmed`) while someone listens; nothing is done otherwise
local function publish_trimmed(k, listening, channel, ids)
  if #ids == 0 or redis.call('EXISTS', listening) == 0 then return end
  local events = {}  -- (ids, and events[id] its message: lib/events.lua's ev_publish_all)
  for c = 1, #ids, 1000 do  -- (their envelopes: one HMGET per 1,000, not an HGET each)
    local envs = redis.call('HMGET', k.jobs, unpack(ids, c, math.min(c + 999, #ids)))
    for i, env in ipairs(envs) do
      local id, name = ids[c + i - 1], ''
      local ok, d = pcall(cjson.decode, env or 'null')
      if ok and type(d) == 'table' and type(d.n) == 'string' then name = d.n end
      events[#events + 1] = id
      events[id] = cjson.encode({event = 'deleted', id = id, name = name, reason = 'trimmed'})
    end
  end
  ev_publish_all(listening, channel, events)  -- (their listeners: one HMGET per 1,000)
end
