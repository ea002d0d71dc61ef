-- lib/events: publishing a job's lifecycle event only where someone listens (included by
-- `--@include events`). The `listening` HASH (admin/hub.py) holds field '*' while an
-- `events()` stream listens (the event goes on the namespace's events channel) and one field
-- per job id a `result()` waiter watches (the event goes on the job's own channel,
-- `<events channel>:<id>`); every value is an expiry the hubs trim by, and the key has a TTL.
-- A job nobody watches publishes nothing while only waiters of other jobs listen. Callers look
-- at EXISTS `listening` once per call first (one command while nobody listens at all).
-- An older errands' `listening` STRING (a rolling upgrade) means: everything on the channel.

-- publish `msg`, an event of job `id`, on the channels someone listens to (one HMGET)
local function ev_publish(listening, channel, id, msg)
  local got = redis.pcall('HMGET', listening, '*', id)
  if got.err then
    redis.call('PUBLISH', channel, msg)
    return
  end
  if got[1] then
    redis.call('PUBLISH', channel, msg)
  end
  if got[2] then
    redis.call('PUBLISH', channel .. ':' .. id, msg)
  end
end

-- publish the events of many jobs (`ids`, and ids[id] = its message) with one HMGET per 1,000
local function ev_publish_all(listening, channel, ids)
  for c = 1, #ids, 1000 do
    local e = math.min(c + 999, #ids)
    local got = redis.pcall('HMGET', listening, '*', unpack(ids, c, e))
    for j = c, e do
      local id = ids[j]
      if got.err or got[1] then
        redis.call('PUBLISH', channel, ids[id])
      end
      if not got.err and got[j - c + 2] then
        redis.call('PUBLISH', channel .. ':' .. id, ids[id])
      end
    end
  end
end
