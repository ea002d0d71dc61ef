-- lib/dedup: deduplication (errands/dedup/, docs/dedup.md), included by `--@include dedup` in
-- enqueue_dedup and in the scripts that start or end a job. A table `d` names the keys, taken
-- from the including script's KEYS: jobs, dedup (HASH dedup key -> owner id), dedupjob (HASH
-- owner id -> mode letter .. dedup key), and for admission window (the key's throttle window).
-- Modes: 's' until started, 'f' until finished ('F' once it started), 't' throttle (a window,
-- no owner). Every release is a compare-and-delete on the owner id, behind the HDEL of the
-- owner's dedupjob entry: a late (fenced-out) transition of an old owner frees nothing.
-- Scripts without a dedup job pay one HLEN per call (see dedup_any).

local function dedup_any(d)
  return redis.call('HLEN', d.dedupjob) > 0
end

-- the owner `id` of dedup key `key` lets it go (only if it still owns it)
local function dedup_free(d, key, id)
  if redis.call('HGET', d.dedup, key) == id then
    redis.call('HDEL', d.dedup, key)
  end
end

-- fetch: job `id` started. A key held until the start is freed; one held until the end is
-- marked started.
local function dedup_started(d, id)
  local v = redis.call('HGET', d.dedupjob, id)
  if not v then return end
  local mode, key = string.sub(v, 1, 1), string.sub(v, 2)
  if mode == 's' then
    if redis.call('HDEL', d.dedupjob, id) == 1 then
      dedup_free(d, key, id)
    end
  elseif mode == 'f' then
    redis.call('HSET', d.dedupjob, id, 'F' .. key)
  end
end

-- job `id` ended (acked, dead, dropped, cancelled, deleted): whatever key it owns is freed
local function dedup_ended(d, id)
  local v = redis.call('HGET', d.dedupjob, id)
  if v and redis.call('HDEL', d.dedupjob, id) == 1 then
    dedup_free(d, string.sub(v, 2), id)
  end
end

-- admission: false when a job of `mode` may take `key` now, else 'dropped' and the id of the
-- job holding it. An owner whose job no longer exists counts as free (its entries go).
local function dedup_holder(d, mode, key)
  if mode == 't' then
    local holder = redis.call('GET', d.window)
    if holder then return 'dropped', holder end
    return false
  end
  local holder = redis.call('HGET', d.dedup, key)
  if not holder then return false end
  if redis.call('HEXISTS', d.jobs, holder) == 1 then
    return 'dropped', holder
  end
  redis.call('HDEL', d.dedup, key)
  if string.sub(redis.call('HGET', d.dedupjob, holder) or '', 2) == key then
    redis.call('HDEL', d.dedupjob, holder)
  end
  return false
end

-- job `id`, just stored, takes `key` (a throttle window of `window_ms`)
local function dedup_take(d, mode, key, id, window_ms)
  if mode == 't' then
    redis.call('SET', d.window, id, 'PX', window_ms)
  else
    redis.call('HSET', d.dedup, key, id)
    redis.call('HSET', d.dedupjob, id, mode .. key)
  end
end
