-- checkin: record the progress message of a running job; publish it to event listeners. Fenced
-- per attempt: only the attempt running the job now may check in.
-- KEYS[1] checkins (HASH id -> JSON)   KEYS[2] jobs   KEYS[3] listening   KEYS[4] attempts
-- ARGV[1] job id   ARGV[2] job name   ARGV[3] checkin JSON   ARGV[4] events channel
-- ARGV[5] the attempt: "<pool id>:<token>"
-- Returns 1, or 0 when this attempt no longer runs the job (it ended, or was taken back): read,
-- and nothing written first (lib/types.lua unwritten), so that a demoted master refuses it,
-- where the new master may hold the attempt (its start not replicated yet, or the end the data
-- read shows lost): a handler told so may stop, and its ack would then end the job there with
-- its work undone.
-- A key of another type (checkins, jobs, attempts: `listening` is read with EXISTS and pcall) is
-- refused by name before anything is written (Redis' own WRONGTYPE, which names no key, came
-- from the reads or the HSET).
--@include events
--@include types
local wrong = wrong_type(function(j) return j ~= 3 and 'HLEN' end, 'no checkin recorded')
if wrong then
  return wrong
end
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[5] or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return unwritten('HDEL', KEYS[4], 0)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  ev_publish(KEYS[3], ARGV[4], ARGV[1], '{"event":"progress","id":"' .. ARGV[1] .. '","name":"' .. ARGV[2] .. '","checkin":' .. ARGV[3] .. '}')
end
return 1
