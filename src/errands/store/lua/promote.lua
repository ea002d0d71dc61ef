-- promote: move due jobs from the scheduled and retry sets of each job name onto its queue.
-- Atomic, so each job moves exactly once however many pools promote at the same time.
-- KEYS[1] priorities   KEYS[2] seq   KEYS[3] idle   KEYS[4] partitions
-- KEYS[5..] six per job name: queue, scheduled set, retry set, partition queue, partitions
--           ready (a job with a partition is indexed by it, see lib/limits.lua), idle pools
-- ARGV[1] now ms   ARGV[2] most jobs to move per set   ARGV[3] wake channel
-- Returns {jobs moved, earliest due ms still waiting or -1}.
-- A key of another type fails the whole call before its first write (a job taken out of its
-- set and then not queued would be lost).
-- Wakes one idle pool serving each name that got a job (lib/wake.lua; KEYS[3], every idle
-- pool, is looked at first, so a busy namespace pays one SCARD).
--@include prio
--@include limits
--@include wake
--@include types
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local TYPES = {'HLEN', 'GET', 'SCARD', 'HLEN'}  -- then every key of a name is a sorted set
local wrong = wrong_type(function(j) return TYPES[j] or 'ZCARD' end, 'no job was promoted')
if wrong then
  return wrong
end
local moved = 0
local earliest = -1
local partitioned = redis.call('EXISTS', KEYS[4]) == 1
local woken = {}
for k = 5, #KEYS, 6 do
  local before = moved
  local P = {on = partitioned, part = KEYS[4], seq = KEYS[2], pq = KEYS[k + 3], pready = KEYS[k + 4]}
  for s = 1, 2 do
    local src = KEYS[k + s]
    local due = redis.call('ZRANGEBYSCORE', src, '-inf', now, 'LIMIT', 0, limit)
    for _, id in ipairs(due) do
      redis.call('ZREM', src, id)
      local seq = redis.call('INCR', KEYS[2])
      local prio = tonumber(redis.call('HGET', KEYS[1], id) or '0')
      redis.call('ZADD', KEYS[k], queue_score(seq, prio), id)
      lim_queued(P, id, queue_score(seq, prio))
      moved = moved + 1
    end
    local head = redis.call('ZRANGE', src, 0, 0, 'WITHSCORES')
    if head[2] then
      local t = tonumber(head[2])
      if earliest < 0 or t < earliest then
        earliest = t
      end
    end
  end
  if moved > before then
    woken[#woken + 1] = KEYS[k + 5]
  end
end
if #woken > 0 and redis.call('SCARD', KEYS[3]) > 0 then
  local at = false
  for _, idle in ipairs(woken) do
    local _, t = wake_one(idle, ARGV[3] .. ':', at)
    at = t
  end
end
return {moved, earliest}
