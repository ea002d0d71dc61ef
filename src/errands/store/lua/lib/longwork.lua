-- lib/longwork: helpers of the long and bulk work (iterable jobs, batches; src/errands/longwork),
-- included by `--@include longwork` in the scripts that need them.
--@include prio

-- the queue score that puts a job of priority `prio` ahead of every job of that priority waiting
-- on queue `q` (an iterable job that stopped at a checkpoint goes back there); nil when none
-- waits (then the usual score, behind the jobs waiting, is the head anyway)
local function queue_head(q, prio)
  local base = queue_score(0, prio)
  local first = redis.call('ZRANGEBYSCORE', q, base, '(' .. (base + PRIO_STEP), 'WITHSCORES', 'LIMIT', 0, 1)
  if #first == 0 then
    return nil
  end
  return math.max(tonumber(first[2]) - 1, base)
end
