-- deregister: a pool stopping gracefully gives up its lease, if it holds no job any more (else
-- it stays registered, and a reaper takes its jobs once its heartbeats have stopped). Its idle
-- marks go in any case (it fetches no more under this id: a stop, or a lease lost).
-- KEYS[1] pools   KEYS[2] in_progress of the pool   KEYS[3] its info   KEYS[4] idle
-- KEYS[5] its hand-off list (lib/handoff.lua: what is left there is no job, the jobs handed
-- off being in its in-progress set)   KEYS[6] quiet requests (its field goes with its lease:
-- admin/pools.py)   KEYS[7..] the idle pools of each job name it serves (lib/wake.lua)
-- ARGV[1] pool id
-- Returns 1 when deregistered, 0 when it still holds jobs (or was not registered). A re-sent
-- call (redis-py, after a lost reply) of one that deregistered writes nothing and answers 0 (not
-- registered any more): no caller acts on the answer (worker/leasing.py _deregister, the pool
-- stopping or carrying on under a new id either way; worker/reaper.py, the idle marks of a pool
-- it reaped), which Scripts.deregister hands back as it is. A key of
-- another type is refused by name before the first write (the info and the hand-off list are
-- DELeted whatever their type): an idle set of another type raised after the pool left the
-- registry.
--@include types
local TYPES = {'ZCARD', 'ZCARD', false, 'SCARD', false, 'HLEN'}  -- then each name's idle pools
local wrong, sizes = wrong_type(function(j) return j > 6 and 'ZCARD' or TYPES[j] end,
  'nothing deregistered')
if wrong then
  return wrong
end
for i = 7, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
if sizes[2] > 0 or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then  -- (its in-progress set's
  -- ZCARD, by wrong_type: the ZREMs above touch the idle pools only)
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[5])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
return 1
