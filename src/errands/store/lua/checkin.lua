-- checkin: record the progress message of a running job; publish it to event listeners.
-- KEYS[1] checkins (HASH id -> JSON)   KEYS[2] jobs   KEYS[3] listening
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] checkin JSON   ARGV[4] events channel
-- Returns 1, or 0 when the job no longer exists.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PUBLISH', ARGV[4], '{"event":"progress","id":"' .. ARGV[1] .. '","name":"' .. ARGV[2] .. '","checkin":' .. ARGV[3] .. '}')
end
return 1
