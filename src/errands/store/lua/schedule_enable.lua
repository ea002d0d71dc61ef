-- schedule_enable: enable or disable a schedule, only if it is defined (at runtime or in a pool's
-- code): a schedule deleted meanwhile gets no state back.
-- KEYS[1] state of the schedule (HASH)   KEYS[2] runtime definitions   KEYS[3] code definitions
-- ARGV[1] schedule name   ARGV[2] '1' = enable, '0' = disable
-- Returns 1, or 0 when no such schedule is defined (nothing written). A key of another type is
-- refused by name before the first write. The 0, read and not written, writes nothing first
-- (lib/types.lua unwritten): a master demoted by a failover refuses it (READONLY), where the new
-- master may define the schedule.
--@include types
local wrong = wrong_type(function() return 'HLEN' end, 'nothing written')
if wrong then
  return wrong
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  return unwritten('HDEL', KEYS[1], 0)
end
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[1], 'disabled')
else
  redis.call('HSET', KEYS[1], 'disabled', '1')
end
return 1
