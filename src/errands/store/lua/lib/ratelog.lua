-- lib/ratelog: the sliding logs of start times that rate limits count in (included by
-- `--@include ratelog` from lib/limits.lua). A log is a HASH field of P.prate; P.prexp orders
-- the fields by when their window passes (lim_tidy drops them).
local LIM_W = 13                    -- digits of one start time in a rate log (below)

-- A rate log: '#', the starts counted before its first record (LIM_C digits), then records in
-- time order: a time (LIM_W digits) and the starts counted up to and including it (LIM_C
-- digits). Records are coarse: a window of `per` ms is cut in buckets of w = lim_width(per) ms
-- (ms t is in bucket floor(t / w)), and a start joins the last record when that record is in
-- its bucket (or later: a clock gone back), the record's time moved forward to the start's.
-- A start is so counted at a time up to w - 1 ms after it happened (later only after a clock
-- gone back), never before: it leaves the window later, so never more than n starts in any
-- window of per (conservative; lim_room's time may be up to w later than an exact log's), a log
-- holds at most a record per bucket of its window (per / w + 2 <= LIM_BUCKETS + 2), whatever
-- the limit and however many calls started something. Logs of errands before buckets (one
-- record per ms with starts) are of the same form: their records count as written, and go as
-- their window passes. An older log still (a digit first: one time per start) is read as
-- records of one start each, and written back in this form. (Buckets are fixed, not "within w
-- of the last record": a record moved on by starts every w / 2 would carry its first start
-- forward without end, counting it long after its window.) LIM_BUCKETS trades the delay (0.1%
-- of the window) for a log's size (about 23 KB at most, read and written whole per call).
local LIM_BUCKETS = 1000  -- buckets per window (limits/spec.py's RATE_BUCKETS)
local LIM_C = 10
local LIM_R = LIM_W + LIM_C
local LIM_EMPTY = '#0000000000'  -- ('#' and LIM_C zeros: no string.rep, which a library's top
-- level cannot call on Redis 7.0, store/fnlib.py)

-- the bucket width of a window of `per` ms: per / LIM_BUCKETS rounded up (1 ms up to 1 s)
local function lim_width(per)
  return math.ceil(per / LIM_BUCKETS)
end

-- record i's time (i >= 1), and the starts counted up to it (i = 0: before the first record)
local function lim_at(log, i)
  local at = 2 + LIM_C + (i - 1) * LIM_R
  return tonumber(string.sub(log, at, at + LIM_W - 1))
end
local function lim_cum(log, i)
  local at = 2 + LIM_C + i * LIM_R - LIM_C
  return tonumber(string.sub(log, at, at + LIM_C - 1))
end

local function lim_upgrade(old)
  local parts, cum, last = {LIM_EMPTY}, 0, false
  for j = 1, #old - LIM_W + 1, LIM_W do
    local t = string.sub(old, j, j + LIM_W - 1)
    cum = cum + 1
    if t ~= last then
      parts[#parts + 1] = ''
    end
    parts[#parts] = t .. string.format('%010d', cum)
    last = t
  end
  return table.concat(parts)
end

-- the first i in [lo, hi] for which below(i) is false, below being true up to some i, then false
-- (a bisection: hi when below holds up to hi - 1)
local function lim_first(lo, hi, below)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if below(mid) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo
end

-- a stored rate log in the current form ('' empty, an older one upgraded), or nil when it is of
-- neither form (written by hand, or by a bug): its digits are all the reads below rely on
local function lim_form(log)
  if log == '' then
    return LIM_EMPTY
  elseif string.find(log, '^%d+$') and #log % LIM_W == 0 then
    return lim_upgrade(log)
  elseif string.find(log, '^#%d+$') and (#log - 1 - LIM_C) % LIM_R == 0 then
    return log
  end
  return nil
end

-- the part of a rate log (lim_form's) still in the window ending at now (a start at t counts
-- until t + per inclusive), and how many starts it holds. The first live record is found by
-- bisection, and a log that is all live is not copied.
local function lim_live(log, per, now)
  local cut, n = now - per, (#log - 1 - LIM_C) / LIM_R
  -- the first live record is the (lo + 1)th, for some lo in [0, n]
  local lo = lim_first(0, n, function(m) return lim_at(log, m + 1) < cut end)
  local count = lim_cum(log, n) - lim_cum(log, lo)
  if lo == 0 then
    return log, count
  end
  local at = 2 + LIM_C + lo * LIM_R
  return '#' .. string.sub(log, at - LIM_C, at - 1) .. string.sub(log, at), count
end

-- the live logs read in this script call ("<key>\0<field>" -> live part): the write that
-- follows a check does not read and cut its log again
local LIM_SEEN = {}  --@percall (store/fnlib.py: made anew by each call of a library)

-- the live part of a rate log and how many starts it holds. A log of neither form is read as
-- empty (its starts are not counted: one window may start more than the rate allows), said in
-- the Redis log; the next start writes it anew, in form: it raised in the middle of a fetch.
local function lim_read(h, field, per, now)
  local seen = LIM_SEEN[h .. '\0' .. field]
  if seen then
    local live, count = lim_live(seen, per, now)
    return live, count
  end
  local raw = redis.call('HGET', h, field) or ''
  local log = lim_form(raw)
  if not log then
    redis.log(redis.LOG_WARNING, 'errands: ' .. h .. ' field ' .. field .. ' holds '
      .. string.sub(raw, 1, 40) .. ', not a rate log: read as empty')
    log = LIM_EMPTY
  end
  local live, count = lim_live(log, per, now)
  LIM_SEEN[h .. '\0' .. field] = live
  return live, count
end

-- how many starts rate (n per `per` ms) allows now, and when it is 0, the ms it allows one: when
-- the (count - n + 1)th live start leaves the window
local function lim_room(h, field, n, per, now)
  local live, count = lim_read(h, field, per, now)
  if count < n then
    return n - count, 0
  end
  local target = lim_cum(live, 0) + count - n + 1
  -- the first record whose count reaches it
  local lo = lim_first(1, (#live - 1 - LIM_C) / LIM_R, function(i)
    return lim_cum(live, i) < target
  end)
  return 0, lim_at(live, lo) + per + 1
end

-- record `count` starts at now in a rate log (its counts start again from 0 near LIM_C digits):
-- in its last record when that is in now's bucket or later (at the later of the two times),
-- else in a new record
local function lim_started(P, field, n, per, now, count)
  local live = lim_read(P.prate, field, per, now)
  local m = (#live - 1 - LIM_C) / LIM_R
  local cum = lim_cum(live, m) + count
  if cum >= 9e9 then
    local base, parts = lim_cum(live, 0), {LIM_EMPTY}
    for i = 1, m do
      parts[#parts + 1] = string.format('%013d%010d', lim_at(live, i), lim_cum(live, i) - base)
    end
    live, cum = table.concat(parts), cum - base
  end
  local last, w, t = m > 0 and lim_at(live, m), lim_width(per), now
  if last and (last >= now or math.floor(last / w) == math.floor(now / w)) then
    t = math.max(last, now)
    live = string.sub(live, 1, #live - LIM_R)
  end
  live = live .. string.format('%013d%010d', t, cum)
  redis.call('HSET', P.prate, field, live)
  LIM_SEEN[P.prate .. '\0' .. field] = live
  if P.prexp then  -- (when its last record leaves the window: t, later than now after a clock
    redis.call('ZADD', P.prexp, t + per + 1, field)  -- gone back)
  end
end

-- A start counted at `at` (ms) that never happened: a job fetched ahead and given back before it
-- started (settle.lua), in a log of window `per`. The fetch counted it in the record of at's
-- bucket, at or after `at` (later starts of the bucket may have moved that record's time on):
-- the log with one start less in the first record at or after `at`, when that record is in
-- at's bucket (dropped when it then holds none). That record is the start's own or one before
-- it (the start of another then counted as at the later time: conservative), unless the
-- start's record was cut (its window passed) and a later record of the bucket stayed (written
-- by an errands before buckets, one record per ms): the start is uncounted only when that
-- cannot be, the record found not the log's first or exactly at `at` (as before buckets), or
-- the window of `at` not passed at now() (Redis ms, asked only then). nil when it holds no
-- such start, or is not a log. Reads nothing but now() (TIME: call it before the first write).
local function lim_uncounted(log, at, per, now)
  log = lim_form(log)
  if not log then
    return nil
  end
  local n, w = (#log - 1 - LIM_C) / LIM_R, lim_width(per)
  -- the first record at or after `at`
  local lo = lim_first(1, n + 1, function(i) return lim_at(log, i) < at end)
  if lo > n then
    return nil
  end
  local t, before = lim_at(log, lo), lim_cum(log, lo - 1)
  if lim_cum(log, lo) <= before or math.floor(t / w) ~= math.floor(at / w) then
    return nil
  end
  if lo == 1 and t ~= at and at < now() - per then
    return nil
  end
  local parts = {string.sub(log, 1, 1 + LIM_C + (lo - 1) * LIM_R)}
  if lim_cum(log, lo) - 1 > before then
    parts[2] = string.format('%013d%010d', t, lim_cum(log, lo) - 1)
  end
  for i = lo + 1, n do
    parts[#parts + 1] = string.format('%013d%010d', lim_at(log, i), lim_cum(log, i) - 1)
  end
  return table.concat(parts)
end

-- after writing rate logs: logs past their window go (a few per call), and both keys live at
-- least a window and 1 s longer (so a job name nobody fetches any more leaves nothing behind).
-- A TTL found below that is set 1 s past it: renewed about once a second, not by nearly every
-- call (a TTL set to the least ran below it by the next ms; PEXPIRE is a write, replicated), a
-- key outliving its last start by a window and 1 to 2 s. PTTL of both keys on each call: a key
-- of no TTL (-1: made anew by a write of this call, its fields all dropped before) gets one.
local function lim_tidy(P, per, now)
  local old = redis.call('ZRANGEBYSCORE', P.prexp, '-inf', now, 'LIMIT', 0, 32)
  if #old > 0 then
    redis.call('HDEL', P.prate, unpack(old))
    redis.call('ZREM', P.prexp, unpack(old))
  end
  local least = per + 1000
  for _, key in ipairs({P.prate, P.prexp}) do
    if redis.call('PTTL', key) < least then
      redis.call('PEXPIRE', key, least + 1000)
    end
  end
end
