-- ack: finish jobs that succeeded. Fenced: a job no longer in this pool's in-progress set (taken
-- back by a reaper) is left alone, so counters are never decremented twice.
-- KEYS[1] jobs   KEYS[2] running   KEYS[3] in_progress of this pool   KEYS[4] priorities
-- KEYS[5] recoveries   KEYS[6] stats   KEYS[7] idle
-- ARGV[1] wake channel   ARGV[2] '1' to wake idle pools (a job with a concurrency limit finished)
-- ARGV[3..] two per job: id, name
-- Returns the number of jobs acknowledged.
local done = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[3], id .. ':' .. ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], -1)
    done[#done + 1] = id
  end
end
if #done > 0 then
  redis.call('HDEL', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[4], unpack(done))
  redis.call('HDEL', KEYS[5], unpack(done))
  redis.call('HINCRBY', KEYS[6], 'processed', #done)
  if ARGV[2] == '1' and redis.call('SCARD', KEYS[7]) > 0 then
    redis.call('PUBLISH', ARGV[1], 'slot')
  end
end
return #done
