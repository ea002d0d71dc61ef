-- ack: finish jobs that succeeded: keep their result record (with a TTL) and history, drop their
-- envelope. Fenced: a job no longer in this pool's in-progress set (taken back by a reaper) is
-- left alone, so counters are never decremented twice.
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] stats   KEYS[7] idle   KEYS[8] history   KEYS[9] history_data
-- KEYS[10] checkins   KEYS[11] listening   KEYS[12] errors   KEYS[13] cancel requests
-- KEYS[14 .. 13+N] the done-record key of each job; then the history-of-name key of each name
-- ARGV[1] wake channel   ARGV[2] '1' to wake idle pools (a job with a concurrency limit finished)
-- ARGV[3] events channel   ARGV[4] now ms   ARGV[5] '1' to record history   ARGV[6] N jobs
-- ARGV[7..] seven per job: id, name, name index (1-based), result JSON, started ms,
--           result TTL ms (0 = keep no record), attempt
-- Returns the number of jobs acknowledged.
local n = tonumber(ARGV[6])
local now = ARGV[4]
local history = ARGV[5] == '1'
local listening = redis.call('EXISTS', KEYS[11]) == 1
local done = {}
for j = 0, n - 1 do
  local o = 7 + j * 7
  local id, name = ARGV[o], ARGV[o + 1]
  if redis.call('ZREM', KEYS[3], id .. ':' .. name) == 1 then
    redis.call('HINCRBY', KEYS[2], name, -1)
    done[#done + 1] = id
    local env = redis.call('HGET', KEYS[1], id)
    if env then
      local record = '{"id":"' .. id .. '","status":"finished","job":' .. env .. ',"result":'
        .. ARGV[o + 3] .. ',"started":' .. ARGV[o + 4] .. ',"finished":' .. now
        .. ',"attempt":' .. ARGV[o + 6] .. '}'
      local ttl = tonumber(ARGV[o + 5])
      if ttl > 0 then
        redis.call('SET', KEYS[14 + j], record, 'PX', ttl)
      end
      if history then
        local hk = id .. ':' .. ARGV[o + 6]
        redis.call('HSET', KEYS[9], hk, record)
        redis.call('ZADD', KEYS[8], now, hk)
        redis.call('ZADD', KEYS[13 + n + tonumber(ARGV[o + 2])], now, hk)
      end
    end
    if listening then
      redis.call('PUBLISH', ARGV[3], '{"event":"finished","id":"' .. id .. '","name":"' .. name .. '"}')
    end
  end
end
if #done > 0 then
  redis.call('HDEL', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
  redis.call('HDEL', KEYS[5], unpack(done))
  redis.call('HDEL', KEYS[10], unpack(done))
  redis.call('HDEL', KEYS[12], unpack(done))
  redis.call('HDEL', KEYS[13], unpack(done))
  redis.call('HINCRBY', KEYS[6], 'processed', #done)
  if ARGV[2] == '1' and redis.call('SCARD', KEYS[7]) > 0 then
    redis.call('PUBLISH', ARGV[1], 'slot')
  end
end
return #done
