-- checkpoint: record the checkpoint of a running iterable job (its cursor, items done, run time;
-- see longwork/iterable.py), fenced per attempt like checkin.lua: only the attempt running the
-- job now may write it, so a pool that lost the job (a zombie) cannot move its cursor.
-- Idempotent: a re-sent call writes the same value.
-- KEYS[1] checkpoints (HASH id -> JSON)   KEYS[2] jobs   KEYS[3] attempts   KEYS[4] cancel requests
-- KEYS[5] listening
-- ARGV[1] job id   ARGV[2] the attempt: "<pool id>:<token>"   ARGV[3] checkpoint JSON
-- ARGV[4] events channel   ARGV[5] job name
-- Returns 0 when this attempt no longer runs the job (nothing written, but a write of nothing
-- first: lib/types.lua unwritten, as checkin.lua); else 1, or the kind of cancel request
-- ('cancel' | 'destroy') stored for the job: the handler stops there.
-- The cancel request is read before the first write (it was read after the checkpoint's HSET:
-- cancel requests of another type raised there, the checkpoint written); cancel requests or
-- checkpoints of another type are refused by name before it, nothing written.
--@include events
--@include types
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return unwritten('HDEL', KEYS[3], 0)
end
local wrong = wrong_type(function(j) return (j == 1 or j == 4) and 'HLEN' end,
  'no checkpoint written', 4)
if wrong then
  return wrong
end
local request = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('EXISTS', KEYS[5]) == 1 then
  ev_publish(KEYS[5], ARGV[4], ARGV[1], '{"event":"checkpoint","id":"' .. ARGV[1] .. '","name":"' .. ARGV[5] .. '","checkpoint":' .. ARGV[3] .. '}')
end
return request or 1
