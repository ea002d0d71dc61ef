-- schedule_register: register the schedules of a pool's code. A name is this pool's when no
-- definition is registered under it, when the registered one is the same, or when the one
-- registered was not registered again by any pool for a while (its code is gone: a deploy
-- removed or changed it). Otherwise another running pool's code defines the name differently:
-- the registered definition stays, and the name is returned as a conflict.
-- KEYS[1] code definitions (HASH name -> JSON)   KEYS[2] live until (ZSET name -> ms)
-- ARGV[1] now ms   ARGV[2] ms a registration stays live   ARGV[3..] two per schedule: name, JSON
-- Returns {names newly registered (new, changed, or deleted by a Client), then two per
-- conflict: name, the definition registered}.
-- A registration never lowers the live-until time of the same definition: a pool with a
-- long refresh interval stays live while pools with short ones come and go.
-- Idempotent on re-send (redis-py sends a call again when its reply is lost): a call that
-- writes a definition makes it live until now + ARGV[2] + 0.5 ms, one that finds it the same
-- until now + ARGV[2]; the same call sent again (same now) finds its own half millisecond and
-- reports the name newly registered again. (Another call at the very same ms would report it
-- too: its pool only looks at the schedule's state at once.)
-- ARGV[1] and ARGV[2] are integers in 0..MAX_MS spelt as Redis reads them (is_int), checked
-- before the first write: tonumber() took 'nan', and ZADD refused the score after a definition
-- was stored.
-- Conflicts only (nothing written) write nothing first (lib/types.lua unwritten): a master
-- demoted by a failover refuses them, where the new master may hold this pool's definition
-- (the other one dropped, or this one registered since); its pool would not fire it.
--@include types
local now = tonumber(ARGV[1])
if not (is_int(ARGV[1], 0, MAX_MS) and is_int(ARGV[2], 0, MAX_MS)) or #ARGV % 2 ~= 0 then
  return redis.error_reply('errands: schedule_register: now, live ms, then a name and a'
    .. ' definition per schedule (' .. #ARGV .. ' arguments)')
end
local until_ms = now + tonumber(ARGV[2])
local reply, wrote = {0}, false
for i = 3, #ARGV, 2 do
  local name, def = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], name)
  local live = tonumber(redis.call('ZSCORE', KEYS[2], name) or '0')
  if current == def or not current or live < now then
    local score = until_ms
    if current ~= def then
      redis.call('HSET', KEYS[1], name, def)
    end
    if current ~= def or live == until_ms + 0.5 then
      reply[1] = reply[1] + 1
      score = until_ms + 0.5
    end
    if current == def and live > score then
      score = live  -- a pool's longer registration stays: no pool lowers it (else listed stale)
    end
    redis.call('ZADD', KEYS[2], score, name)
    wrote = true
  else
    reply[#reply + 1] = name
    reply[#reply + 1] = current
  end
end
if #reply > 1 and not wrote then
  return unwritten('ZREM', KEYS[2], reply)
end
return reply
