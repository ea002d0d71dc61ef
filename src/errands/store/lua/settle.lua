-- settle: finish a job that did not succeed: retry later, bury in the dead set, drop, mark
-- cancelled, or put back on its queue (graceful stop, snooze). Fenced like ack: nothing happens
-- if the job is no longer in this pool's in-progress set.
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] errors   KEYS[7] stats   KEYS[8] seq   KEYS[9] idle
-- KEYS[10] target: retry set (retry), scheduled set (later), dead set (dead), queue (requeue),
--          cancelled set (cancelled)
-- KEYS[11] history   KEYS[12] history_data   KEYS[13] history of the job name
-- KEYS[14] done record of the job   KEYS[15] listening   KEYS[16] checkins
-- KEYS[17] cancel requests   KEYS[18] cancelled set
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] mode: retry | later | dead | drop | requeue | cancelled
-- ARGV[4] new envelope ('' keeps it)   ARGV[5] due ms (retry, later) or time of death ms (dead)
-- ARGV[6] error JSON ('' none)   ARGV[7] dead/cancelled set max size   ARGV[8] drop dead jobs
-- older than this ms   ARGV[9] wake channel   ARGV[10] stats counter to increment ('' none)
-- ARGV[11] now ms   ARGV[12] attempt   ARGV[13] '1' to record history   ARGV[14] events channel
-- ARGV[15] done-record TTL ms   ARGV[16] started ms
-- A cancel (or destroy) requested while the job ran turns retry/later/requeue into cancelled
-- (or drop): a job whose cancel was acknowledged never runs again.
-- Returns 1 when settled, 0 when the job was not this pool's any more.
local id, name, mode = ARGV[1], ARGV[2], ARGV[3]
if redis.call('ZREM', KEYS[3], id .. ':' .. name) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], name, -1)
redis.call('HDEL', KEYS[16], id)
local target, score, counter, history = KEYS[10], ARGV[5], ARGV[10], ARGV[13] == '1'
local request = redis.call('HGET', KEYS[17], id)
if request then
  redis.call('HDEL', KEYS[17], id)
  if mode == 'retry' or mode == 'later' or mode == 'requeue' then
    mode, target, score, counter = 'cancelled', KEYS[18], ARGV[11], 'cancelled'
    if request == 'destroy' then
      mode, history = 'drop', false
    end
  end
end
if counter ~= '' then
  redis.call('HINCRBY', KEYS[7], counter, 1)
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], id, ARGV[4])
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[6], id, ARGV[6])
end
local recorded = mode == 'retry' or mode == 'dead' or mode == 'drop' or mode == 'cancelled'
if recorded then
  local env = redis.call('HGET', KEYS[1], id)
  local err = ARGV[6]
  if err == '' then err = 'null' end
  local status = mode
  if mode == 'retry' then status = 'failed' elseif mode == 'drop' then status = 'dropped' end
  local record = '{"id":"' .. id .. '","status":"' .. status .. '","job":' .. (env or 'null')
    .. ',"error":' .. err .. ',"started":' .. ARGV[16] .. ',"finished":' .. ARGV[11]
    .. ',"attempt":' .. ARGV[12] .. '}'
  if history then
    local hk = id .. ':' .. ARGV[12]
    redis.call('HSET', KEYS[12], hk, record)
    redis.call('ZADD', KEYS[11], ARGV[11], hk)
    redis.call('ZADD', KEYS[13], ARGV[11], hk)
  end
  if mode == 'cancelled' and tonumber(ARGV[15]) > 0 then
    redis.call('SET', KEYS[14], record, 'PX', ARGV[15])
  end
  if redis.call('EXISTS', KEYS[15]) == 1 then
    redis.call('PUBLISH', ARGV[14], '{"event":"' .. status .. '","id":"' .. id .. '","name":"' .. name
      .. '","error":' .. err .. '}')
  end
end
if mode == 'drop' then
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
elseif mode == 'retry' or mode == 'later' then
  redis.call('ZADD', target, score, id)
elseif mode == 'requeue' then
  local seq = redis.call('INCR', KEYS[8])
  local prio = tonumber(redis.call('HGET', KEYS[4], id) or '0')
  redis.call('ZADD', target, seq - prio * 4398046511104, id)
  if redis.call('SCARD', KEYS[9]) > 0 then
    redis.call('PUBLISH', ARGV[9], 'requeue')
  end
elseif mode == 'dead' or mode == 'cancelled' then
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZADD', target, score, id)
  local stale = redis.call('ZRANGEBYSCORE', target, '-inf', '(' .. ARGV[8])
  local excess = redis.call('ZCARD', target) - tonumber(ARGV[7])
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', target, 0, excess - 1)) do
      stale[#stale + 1] = old
    end
  end
  for _, old in ipairs(stale) do
    redis.call('ZREM', target, old)
    redis.call('HDEL', KEYS[1], old)
    redis.call('HDEL', KEYS[4], old)
    redis.call('HDEL', KEYS[6], old)
  end
else
  return redis.error_reply('errands: unknown settle mode ' .. mode)
end
if mode ~= 'requeue' and redis.call('SCARD', KEYS[9]) > 0 then
  redis.call('PUBLISH', ARGV[9], 'settle')
end
return 1
