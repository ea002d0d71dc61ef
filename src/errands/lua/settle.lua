-- settle: finish a job that did not succeed: retry later, bury in the dead set, drop, or put back
-- on its queue (graceful stop, snooze). Fenced like ack: nothing happens if the job is no longer
-- in this pool's in-progress set.
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] errors   KEYS[7] stats   KEYS[8] seq   KEYS[9] idle
-- KEYS[10] target: retry set (retry), scheduled set (later), dead set (dead), queue (requeue)
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] mode: retry | later | dead | drop | requeue
-- ARGV[4] new envelope ('' keeps it)   ARGV[5] due ms (retry, later) or time of death ms (dead)
-- ARGV[6] error JSON ('' none)   ARGV[7] dead set max size   ARGV[8] drop dead jobs older than ms
-- ARGV[9] wake channel   ARGV[10] stats counter to increment ('' none)
-- Returns 1 when settled, 0 when the job was not this pool's any more.
local id = ARGV[1]
if redis.call('ZREM', KEYS[3], id .. ':' .. ARGV[2]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if ARGV[10] ~= '' then
  redis.call('HINCRBY', KEYS[7], ARGV[10], 1)
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], id, ARGV[4])
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[6], id, ARGV[6])
end
local mode = ARGV[3]
if mode == 'drop' then
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[6], id)
elseif mode == 'retry' or mode == 'later' then
  redis.call('ZADD', KEYS[10], ARGV[5], id)
elseif mode == 'requeue' then
  local seq = redis.call('INCR', KEYS[8])
  local prio = tonumber(redis.call('HGET', KEYS[4], id) or '0')
  redis.call('ZADD', KEYS[10], seq - prio * 4398046511104, id)
  if redis.call('SCARD', KEYS[9]) > 0 then
    redis.call('PUBLISH', ARGV[9], 'requeue')
  end
elseif mode == 'dead' then
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZADD', KEYS[10], ARGV[5], id)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', '(' .. ARGV[8])
  local excess = redis.call('ZCARD', KEYS[10]) - tonumber(ARGV[7])
  if excess > 0 then
    for _, old in ipairs(redis.call('ZRANGE', KEYS[10], 0, excess - 1)) do
      stale[#stale + 1] = old
    end
  end
  for _, old in ipairs(stale) do
    redis.call('ZREM', KEYS[10], old)
    redis.call('HDEL', KEYS[1], old)
    redis.call('HDEL', KEYS[4], old)
    redis.call('HDEL', KEYS[6], old)
  end
else
  return redis.error_reply('errands: unknown settle mode ' .. mode)
end
return 1
