-- promote: move due jobs from the scheduled and retry sets of each job name onto its queue.
-- Atomic, so each job moves exactly once however many pools promote at the same time.
-- KEYS[1] priorities   KEYS[2] seq   KEYS[3] idle   KEYS[4] partitions
-- KEYS[5..] six per job name: queue, scheduled set, retry set, partition queue, partitions
--           ready (a job with a partition is indexed by it, see lib/limits.lua), idle pools
-- ARGV[1] now ms   ARGV[2] most jobs to move per set   ARGV[3] wake channel
-- Returns {jobs moved, earliest due ms still waiting or -1}, then, only when names were left
-- alone, {name index (1-based, in KEYS order), its first key of another type, ...}.
-- Everything is read first (the due jobs of every set, the earliest left): a job name one of
-- whose own six keys holds another type (written by hand, a bad restore) is left alone: none
-- of its jobs moved or read (nor counted in the earliest due time), the other names' moved; a
-- shared key (KEYS[1..4]) of another type, a bad argument or a seq that is not a counter fails
-- the whole call before its first write (a job taken out of its set and then not queued would
-- be lost). The priorities are
-- read with prio_of (lib/prio.lua), which cannot fail: a stored priority that is not a whole
-- number in -1000..1000 (nan: it raised in ZADD after the first write, every call, and no job
-- of any name was promoted again) counts as 0, and that job is promoted like the others. The
-- writes are batched: one INCRBY of seq, then per name one ZADD to its queue and one ZREM per
-- set (per 1,000 jobs), and the partition index only for jobs that have a partition.
-- Wakes one idle pool serving each name that got a job (lib/wake.lua; KEYS[3], every idle
-- pool, is looked at first, so a busy namespace pays one SCARD).
--@include prio
--@include limits
--@include wake
--@include types
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if not (is_whole(now) and is_whole(limit) and limit >= 1 and #KEYS % 6 == 4) then
  return redis.error_reply('errands: promote: bad time, limit or key count: ' .. tostring(ARGV[1])
    .. ', ' .. tostring(ARGV[2]) .. ', ' .. #KEYS .. ': no job was promoted')
end
local TYPES = {'HLEN', 'GET', 'SCARD', 'HLEN'}  -- then every key of a name is a sorted set
local wrong = wrong_type(function(j) return TYPES[j] end, 'no job was promoted', 4)
if wrong then
  return wrong
end
local left = {}  -- the names left alone: index, key, ... (their keys are not written)
local CHUNK = 1000
-- reads: the due jobs of each set (in order: a name's scheduled, then retry jobs), and the
-- earliest due time left behind them
local earliest = -1
local sets = {}  -- {queue key index k, source set, ids}
local moved = 0
for k = 5, #KEYS, 6 do
  local bad = first_unfit({KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
    KEYS[k + 5]}, 'ZCARD')
  if bad then
    left[#left + 1], left[#left + 2] = (k - 5) / 6 + 1, bad
  end
  for s = 1, bad and 0 or 2 do
    local src = KEYS[k + s]
    local due = redis.call('ZRANGEBYSCORE', src, '-inf', now, 'LIMIT', 0, limit)
    local head = redis.call('ZRANGE', src, #due, #due, 'WITHSCORES')  -- the first one left
    if head[2] then
      local t = tonumber(head[2])
      if earliest < 0 or t < earliest then
        earliest = t
      end
    end
    if #due > 0 then
      sets[#sets + 1] = {k, src, due}
      moved = moved + #due
    end
  end
end
if moved == 0 then
  return {0, earliest, #left > 0 and left or nil}
end
local partitioned = redis.call('EXISTS', KEYS[4]) == 1
local seq = redis.call('INCRBY', KEYS[2], moved) - moved  -- the first write
local woken, named = {}, {}
for _, set in ipairs(sets) do
  local k, src, due = set[1], set[2], set[3]
  local P = {on = partitioned, part = KEYS[4], seq = KEYS[2], pq = KEYS[k + 3], pready = KEYS[k + 4]}
  for c = 1, #due, CHUNK do
    local e = math.min(#due, c + CHUNK - 1)
    local prios = redis.call('HMGET', KEYS[1], unpack(due, c, e))
    local parts = partitioned and redis.call('HMGET', KEYS[4], unpack(due, c, e))
    local list = {}
    for i = c, e do
      seq = seq + 1
      local score = queue_score(seq, prio_of(prios[i - c + 1]))
      list[#list + 1] = score
      list[#list + 1] = due[i]
      if parts and parts[i - c + 1] then
        lim_queued(P, due[i], score, parts[i - c + 1])
      end
    end
    redis.call('ZADD', KEYS[k], unpack(list))
    redis.call('ZREM', src, unpack(due, c, e))
  end
  if not named[k] then
    named[k] = true
    woken[#woken + 1] = KEYS[k + 5]
  end
end
if redis.call('SCARD', KEYS[3]) > 0 then
  local at = false
  for _, idle in ipairs(woken) do
    local _, t = wake_one(idle, ARGV[3] .. ':', at)
    at = t
  end
end
return {moved, earliest, #left > 0 and left or nil}
