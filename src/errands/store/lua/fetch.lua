-- fetch: move up to a batch of ready jobs into a pool's in-progress set, atomically honouring
-- paused job names and max_concurrency across every pool sharing the namespace.
-- Fenced by the pool's lease: a pool no longer registered (reaped) gets nothing, nor does one
-- whose last heartbeat is older than the dead timeout (it cannot prove it is alive).
-- Each job fetched gets an attempt record "<pool>:<token>" (one token per call): acks, settles
-- and check-ins of the job are fenced on it. A queue entry of a job that already has an attempt
-- running (a duplicate) is dropped, so no counter is taken twice for one job.
-- Bounded: at most 4 x (batch + 64) queue entries are looked at per queue.
-- KEYS[1] jobs   KEYS[2] running (HASH name -> count)   KEYS[3] in_progress of this pool
-- KEYS[4] paused (SET)   KEYS[5] idle (SET)   KEYS[6] unique (HASH digest -> id)
-- KEYS[7] unique_of_job (HASH id -> digest)   KEYS[8] unique_expiry (ZSET)   KEYS[9] listening
-- KEYS[10] recoveries (HASH id -> times taken back from dead pools)   KEYS[11] pools
-- KEYS[12] attempts (HASH id -> pool:token)   KEYS[13] attempt counter   KEYS[14] dedup
-- KEYS[15] dedup_of_job
-- KEYS[16..] the queue of each job name, in the order to try them
-- ARGV[1] pool id   ARGV[2] now ms   ARGV[3] batch size   ARGV[4] events channel
-- ARGV[5] isolation threshold (0 = off): a job taken back from dead pools this many times is a
--         suspect, and a pool runs at most one suspect at a time. The job that kills its worker
--         then no longer takes the same neighbours down with it each time, so they do not end
--         up buried as poison with it.
-- ARGV[6] suspects this pool runs now   ARGV[7] dead timeout ms
-- ARGV[8..] two per queue: job name, max_concurrency (0 = no limit)
-- Returns {status, token, then five per job: queue index (1-based), job id, envelope, queue
-- score, 1 if a suspect}; status 0 = ok, -1 = lease lost (not registered), -2 = lease expired.
-- Marks the pool idle when it got fewer jobs than asked for.
--@include jobstate
--@include dedup
local K = 15
local pool = ARGV[1]
local k = {uniq = KEYS[6], uniqjob = KEYS[7], uniqexp = KEYS[8]}
local d = {dedup = KEYS[14], dedupjob = KEYS[15]}
local deduped = dedup_any(d)
local beat = redis.call('ZSCORE', KEYS[11], pool)
if not beat then
  return {-1, ''}
end
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(beat) > tonumber(ARGV[7]) then
  return {-2, ''}
end
local out = {0, ''}
local token = false
local want = tonumber(ARGV[3])
local nq = #KEYS - K
local listening = redis.call('EXISTS', KEYS[9]) == 1
local isolate = tonumber(ARGV[5])
local suspects = tonumber(ARGV[6])
if isolate > 0 and redis.call('HLEN', KEYS[10]) == 0 then
  isolate = 0
end

-- take job `id` (its envelope `env`, popped with `score`) from queue i into this pool
local function take(i, name, id, env, score, suspect)
  if not token then
    token = tostring(redis.call('INCR', KEYS[13]))
    out[2] = token
  end
  redis.call('HSET', KEYS[12], id, pool .. ':' .. token)
  redis.call('ZADD', KEYS[3], ARGV[2], id .. ':' .. name)
  out[#out + 1] = i
  out[#out + 1] = id
  out[#out + 1] = env
  out[#out + 1] = score
  out[#out + 1] = suspect
  if listening then
    redis.call('PUBLISH', ARGV[4], '{"event":"started","id":"' .. id .. '","name":"' .. name .. '"}')
  end
  release_unique(k, id)  -- a unique job's lock goes when it starts
  if deduped then
    dedup_started(d, id)
  end
end

-- a queue entry worth running: its envelope exists and no attempt of it runs anywhere
local function runnable(id)
  local env = redis.call('HGET', KEYS[1], id)
  if env and redis.call('HEXISTS', KEYS[12], id) == 0 then
    return env
  end
  return false
end

for i = 1, nq do
  if want <= 0 then break end
  local q = KEYS[K + i]
  local name = ARGV[6 + 2 * i]
  local limit = tonumber(ARGV[7 + 2 * i])
  if redis.call('SISMEMBER', KEYS[4], name) == 0 then
    local room = want
    if limit > 0 then
      room = math.min(room, limit - tonumber(redis.call('HGET', KEYS[2], name) or '0'))
    end
    local got = 0
    local offset = 0  -- entries left in place (suspects for other pools) before the window
    for _ = 1, 4 do
      if got >= room then break end
      -- look at the head of the queue, at most room (+ 64 with suspects about) entries at a
      -- time and 4 times: take
      -- the runnable ones (a suspect only while this pool runs none), drop the entries of
      -- vanished or running jobs, leave the rest in place
      local size = room - got
      if isolate > 0 then
        size = size + 64
      end
      local head = redis.call('ZRANGE', q, offset, offset + size - 1, 'WITHSCORES')
      local drop = {}
      for j = 1, #head, 2 do
        if got >= room then break end
        local id = head[j]
        local env = runnable(id)
        if not env then
          drop[#drop + 1] = id
        else
          local suspect = 0
          if isolate > 0 and tonumber(redis.call('HGET', KEYS[10], id) or '0') >= isolate then
            suspect = 1
          end
          if suspect == 0 or suspects == 0 then
            drop[#drop + 1] = id
            take(i, name, id, env, head[j + 1], suspect)
            got = got + 1
            suspects = suspects + suspect
          else
            offset = offset + 1
          end
        end
      end
      if #drop > 0 then
        redis.call('ZREM', q, unpack(drop))
      end
      if #head < 2 * size then break end
    end
    if got > 0 then
      redis.call('HINCRBY', KEYS[2], name, got)
      want = want - got
    end
  end
end
if want > 0 then
  -- fewer jobs than asked for: the queues are drained (or capped, or paused), so the pool waits
  -- for a wake-up instead of asking again at once
  redis.call('SADD', KEYS[5], pool)
else
  redis.call('SREM', KEYS[5], pool)
end
return out
