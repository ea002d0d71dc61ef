-- lib/fetchmarks: fetch.lua's idle marks, written at the end of its call, and the wait it
-- answers (included by `--@include fetchmarks` after wake, with fetch.lua's KEYS and ARGV: see
-- its header). K, Q, nq: its keys before the queues', its keys per queue, its queues.

-- a fetch's wait (.ms: the earliest of its names' waits, false: none), name by name: note(ms)
-- is told when a job held back may start (the earliest kept), full(ms) when the name's
-- type-wide rates, full, free (lib/limits.lua lim_type_room), capped() when the call filled the
-- name's max_concurrency (its waits dropped), done() when the name is served.
-- A name whose type-wide rates are full starts nothing before they free: that is its wait,
-- whatever its partitions' or its scan's (a partition's rate freeing first woke the pool for
-- a fetch that took nothing)
local function fetch_waits()
  local W, held, full = {ms = false}, false, false
  function W.note(ms)
    held = (held and held < ms) and held or ms
  end
  function W.full(ms)
    full = ms
  end
  function W.capped()
    held, full = false, false
  end
  function W.done()
    local ms = full or held
    W.ms, held, full = (ms and not (W.ms and W.ms < ms)) and ms or W.ms, false, false
  end
  return W
end

-- fewer jobs than asked for: the queues are drained (or capped, or paused), so the pool waits
-- for a wake-up instead of asking again at once: marked in the idle SET and each name's idle
-- ZSET (its deadline, + 0.5 when it takes the name's hand-offs), but a skipped one's (skip:
-- fetch_types', lib/fetchcheck.lua), where its mark goes: an enqueue of a name it cannot
-- serve wakes it not (an idle set of another type, sizes[its key] nil, left alone). Whether it
-- flagged one.
local function fetch_mark_idle(K, Q, nq, pool, now, armed, skip, sizes)
  local flagged = false
  redis.call('SADD', KEYS[5], pool)
  local deadline = now + tonumber(ARGV[9])
  local handoffs = armed and (tonumber(ARGV[10 + 3 * nq]) or 0) > 0
  for i = 1, nq do
    local idle = KEYS[K + i * Q]
    -- + 0.5: takes hand-offs of the name (none without a limit of its own: lib/handoff.lua)
    local takes = handoffs and tonumber(ARGV[8 + 3 * i]) == 0 and ARGV[9 + 3 * i] == '' and 0.5
      or 0
    if skip and skip[i] then
      if sizes[K + i * Q] then
        redis.call('ZREM', idle, pool)
      end
    else
      flagged = flagged or takes > 0
      if redis.call('ZADD', idle, -(deadline + takes), pool) == 1 then  -- minus deadlines
        redis.call('ZREMRANGEBYSCORE', idle, '(' .. -now, '+inf')  -- of pools gone meanwhile
      end
    end
  end
  return flagged
end

-- all asked for: the pool's marks go, and while some pool is idle, one idle pool of the first
-- name not skipped (none can serve it) whose queue still holds jobs is woken. (A call that took
-- a job leaves alone the idle SET and the idle ZSETs the type checks found empty, `sizes`: no
-- mark of this pool to take away; one that took none, having written nothing else, writes them
-- as before: lib/types.lua's unwritten)
local function fetch_unmark(K, Q, nq, pool, now, sizes, token, skip)
  local idle = sizes[5]
  if idle > 0 or not token then
    idle = idle - redis.call('SREM', KEYS[5], pool)
  end
  for i = 1, nq do
    local n = sizes[K + i * Q]  -- (nil: of another type, its name skipped)
    if n and (n > 0 or not token) then
      redis.call('ZREM', KEYS[K + i * Q], pool)
    end
  end
  if idle > 0 then  -- (what SCARD answers now)
    for i = 1, nq do
      if not (skip and skip[i]) and redis.call('ZCARD', KEYS[K + (i - 1) * Q + 1]) > 0 then
        wake_one(KEYS[K + i * Q], ARGV[8] .. ':', now)
        break
      end
    end
  end
end

-- the marks of a call that still wants `want` jobs (token: the call's, or false when it took
-- none; skip: the names it skipped, or false), and its hand-off arming key `armed` (or nil) set
-- or deleted
local function fetch_marks(K, Q, nq, pool, now, want, sizes, token, armed, skip)
  local flagged = false
  if want > 0 then
    flagged = fetch_mark_idle(K, Q, nq, pool, now, armed, skip, sizes)
  else
    fetch_unmark(K, Q, nq, pool, now, sizes, token, skip)
  end
  if flagged then  -- one hand-off per mark, whatever the names it flagged (lib/handoff.lua)
    redis.call('SET', armed, ARGV[10 + 3 * nq], 'PX', math.max(1, math.min(ARGV[9], 2 ^ 31)))
  elseif armed then
    redis.call('DEL', armed)
  end
end
