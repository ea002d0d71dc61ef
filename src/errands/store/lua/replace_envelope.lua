-- replace_envelope: swap a waiting unique job's envelope (new args) if nothing changed meanwhile.
-- KEYS[1] jobs   KEYS[2] unique (HASH digest -> job id)
-- ARGV[1] digest   ARGV[2] job id   ARGV[3] envelope read before   ARGV[4] new envelope
-- Returns 1 when replaced, 0 when the job started, vanished or changed (caller tries again):
-- read, and nothing written first (lib/types.lua unwritten, on a hash HGET read: it raised on
-- another type), so that a demoted master refuses it, where the new master may hold the job
-- waiting with the envelope read (its caller then gave the new args up).
--@include types
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return unwritten('HDEL', KEYS[2], 0)
end
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then
  return unwritten('HDEL', KEYS[1], 0)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
return 1
