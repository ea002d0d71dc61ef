-- lib/longwork: helpers of the long and bulk work (iterable jobs, batches; src/errands/longwork),
-- included by `--@include longwork` in the scripts that need them.
local PRIO_SPAN = 4398046511104  -- a queue score is seq - priority * PRIO_SPAN (see enqueue.lua)

-- the queue score that puts a job of priority `prio` ahead of every job of that priority waiting
-- on queue `q` (an iterable job that stopped at a checkpoint goes back there); nil when none
-- waits (then the usual score, behind the jobs waiting, is the head anyway)
local function queue_head(q, prio)
  local base = -prio * PRIO_SPAN
  local first = redis.call('ZRANGEBYSCORE', q, base, '(' .. (base + PRIO_SPAN), 'WITHSCORES', 'LIMIT', 0, 1)
  if #first == 0 then
    return nil
  end
  return math.max(tonumber(first[2]) - 1, base)
end
