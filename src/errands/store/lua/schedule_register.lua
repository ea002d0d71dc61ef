-- schedule_register: register the schedules of a pool's code. A name is this pool's when no
-- definition is registered under it, when the registered one is the same, or when the one
-- registered was not registered again by any pool for a while (its code is gone: a deploy
-- removed or changed it). Otherwise another running pool's code defines the name differently:
-- the registered definition stays, and the name is returned as a conflict.
-- KEYS[1] code definitions (HASH name -> JSON)   KEYS[2] live until (ZSET name -> ms)
-- ARGV[1] now ms   ARGV[2] ms a registration stays live   ARGV[3..] two per schedule: name, JSON
-- Returns {names newly registered (new, changed, or deleted by a Client), then two per
-- conflict: name, the definition registered}.
local now = tonumber(ARGV[1])
local reply = {0}
for i = 3, #ARGV, 2 do
  local name, def = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], name)
  local live = tonumber(redis.call('ZSCORE', KEYS[2], name) or '0')
  if current == def or not current or live < now then
    if current ~= def then
      redis.call('HSET', KEYS[1], name, def)
      reply[1] = reply[1] + 1
    end
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), name)
  else
    reply[#reply + 1] = name
    reply[#reply + 1] = current
  end
end
return reply
