-- reap: give a dead pool's in-progress jobs back to their queues exactly once (several reapers may
-- race: only the one whose ZREM succeeds moves a job), return its concurrency slots, and bury a job
-- that has now been taken back from dead pools too often.
-- KEYS[1] pools   KEYS[2] in_progress of the dead pool   KEYS[3] its info   KEYS[4] jobs
-- KEYS[5] running   KEYS[6] priorities   KEYS[7] recoveries   KEYS[8] dead   KEYS[9] errors
-- KEYS[10] seq   KEYS[11] idle   KEYS[12] stats   KEYS[13] cancel requests   KEYS[14] cancelled
-- KEYS[15..] queues, referred to by index
-- ARGV[1] pool id   ARGV[2] dead timeout ms   ARGV[3] max recoveries   ARGV[4] wake channel
-- ARGV[5] error JSON for a buried job
-- ARGV[6..] four per job: in-progress member, job id, job name, queue index (1-based, KEYS[14+i])
-- A job whose cancellation was requested while it ran is cancelled (or destroyed), not requeued.
-- Returns {requeued, buried, 1 if the pool was removed else 0, cancelled}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
if beat and tonumber(beat) >= now - tonumber(ARGV[2]) then
  return {0, 0, 0, 0}
end
local requeued, buried, cancelled = 0, 0, 0
for i = 6, #ARGV, 4 do
  local id = ARGV[i + 1]
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[5], ARGV[i + 2], -1)
    local request = redis.call('HGET', KEYS[13], id)
    if request then
      redis.call('HDEL', KEYS[13], id)
      redis.call('HDEL', KEYS[7], id)
      cancelled = cancelled + 1
      if request == 'destroy' then
        redis.call('HDEL', KEYS[4], id)
        redis.call('HDEL', KEYS[6], id)
        redis.call('HDEL', KEYS[9], id)
      else
        redis.call('ZADD', KEYS[14], now, id)
        redis.call('HINCRBY', KEYS[12], 'cancelled', 1)
      end
    elseif redis.call('HEXISTS', KEYS[4], id) == 1 then
      local n = redis.call('HINCRBY', KEYS[7], id, 1)
      if n >= tonumber(ARGV[3]) then
        redis.call('HDEL', KEYS[7], id)
        redis.call('HSET', KEYS[9], id, ARGV[5])
        redis.call('ZADD', KEYS[8], now, id)
        redis.call('HINCRBY', KEYS[12], 'dead', 1)
        buried = buried + 1
      else
        local seq = redis.call('INCR', KEYS[10])
        local prio = tonumber(redis.call('HGET', KEYS[6], id) or '0')
        redis.call('ZADD', KEYS[14 + tonumber(ARGV[i + 3])], seq - prio * 4398046511104, id)
        requeued = requeued + 1
      end
    end
  end
end
if requeued > 0 and redis.call('SCARD', KEYS[11]) > 0 then
  redis.call('PUBLISH', ARGV[4], 'reap')
end
local removed = 0
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[11], ARGV[1])
  removed = 1
end
return {requeued, buried, removed, cancelled}
