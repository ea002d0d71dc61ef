-- lib/wake: waking one idle pool that serves a job name (included by `--@include wake` in
-- enqueue, promote and fetch). A pool whose fetch found fewer jobs than it asked for registers
-- in the `idle_for(name)` ZSET of each name it fetched from (member: pool id, score: minus a
-- deadline in ms on the Redis clock, refreshed by its next fetch: an idle pool fetches at least
-- every poll_interval; negated so that ZPOPMIN, in the documented ACL rule, pops the latest) and
-- waits on its own channel, `<wake channel>:<pool id>`. Waking pops the pool with the latest
-- deadline and publishes to its channel: one pool, not all of them. A
-- popped deadline already past means every registration of the name is stale (dead pools, or
-- pools whose loop lagged): nothing is woken, the pools that live fetch on their own within
-- poll_interval. A pool that died after its registration (deadline not yet past) swallows one
-- wake-up: the job then waits for the next fetch of another pool (at most poll_interval).

-- the Redis clock in ms (TIME: allowed in scripts that write, with effects replication)
local function wake_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- wake one idle pool of ZSET `idle` (channels `prefix .. pool id`); `now` ms or false (then
-- TIME is asked only when a pool is registered). Returns the pool id woken (or false), and
-- `now` (as given, or as asked for).
local function wake_one(idle, prefix, now)
  local top = redis.call('ZPOPMIN', idle)
  if not top[1] then
    return false, now
  end
  now = now or wake_now()
  if -tonumber(top[2]) < now then
    return false, now
  end
  redis.call('PUBLISH', prefix .. top[1], 'job')
  return top[1], now
end
