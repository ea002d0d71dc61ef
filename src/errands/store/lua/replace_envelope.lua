-- replace_envelope: swap a waiting unique job's envelope (new args) if nothing changed meanwhile.
-- KEYS[1] jobs   KEYS[2] unique (HASH digest -> job id)   KEYS[3] the reply key of this call
-- (optional; store/keys.py reply, a token per call): a 1 is kept there 2 minutes (lib/types.lua
-- REPLY_MS, as by enqueue_dedup.lua); holding anything else, it fails the call before any write
-- ARGV[1] digest   ARGV[2] job id   ARGV[3] envelope read before   ARGV[4] new envelope
-- Returns 1 when replaced, 0 when the job started, vanished or changed (caller tries again):
-- read, and nothing written first (lib/types.lua unwritten, on a hash HGET read: it raised on
-- another type), so that a demoted master refuses it, where the new master may hold the job
-- waiting with the envelope read (its caller then gave the new args up).
-- A re-sent call (redis-py, after a lost reply) whose first replaced answers 1 from KEYS[3],
-- before anything else and writing nothing: the job may have started since (its lock freed, its
-- envelope gone once it ended), and the re-send's 0 sent Enqueuer.enqueue_unique round again,
-- to store a second job with the same args, which ran twice. (An answer 1 when the stored
-- envelope is the new one would not do: it is deleted when the job ends.)
--@include types
local wrong, got = wrong_type(function(j) return j == 3 and 'GET' end, 'nothing replaced')
if wrong then
  return wrong
elseif got[3] == '1' then
  return unwritten('HDEL', KEYS[1], 1)
elseif got[3] then
  return redis.error_reply('errands: replace_envelope: ' .. KEYS[3] .. ' holds no answer of this '
    .. 'script: nothing replaced, got ' .. string.sub(got[3], 1, 40))
end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return unwritten('HDEL', KEYS[2], 0)
end
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then
  return unwritten('HDEL', KEYS[1], 0)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
if KEYS[3] then
  redis.call('SET', KEYS[3], '1', 'PX', REPLY_MS)
end
return 1
