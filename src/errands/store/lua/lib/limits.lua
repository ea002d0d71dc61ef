-- lib/limits: flow control (included by `--@include limits`). Jobs enqueued with a partition
-- are indexed per job name by partition (`pq`, ordered by member: "<partition>\0<queue
-- score>\0<id>", an index over the job name's queue, which stays the place of a ready job);
-- the partitions that may have ready jobs wait their turn in `pready` (partition -> turn, least
-- recently served first); a partition whose rate limit is exhausted waits in `pwait` (partition
-- -> ms it may start a job again); one whose concurrency is full is in neither until a job of it
-- ends (lim_release). Rates are sliding logs of start times (Redis clock; the format is above
-- lim_live), kept in `prate` ("<per ms>" type-wide, "<per ms>:<partition>") and dropped a
-- window after their last start.
-- A table P names the keys: part (HASH id -> partition), seq (counter for turns), and for one
-- job name: q, pq, pready, pwait, prun (HASH partition -> running), prate, prexp. P.on is
-- whether any job of the namespace has a partition (EXISTS part): without, nothing is looked up.
--@include chunked
local LIM_OFFSET = 4503599627370496  -- 2^52: queue scores made non-negative for the index
local LIM_W = 13                    -- digits of one start time in a rate log (below)

local function lim_entry(p, score, id)
  return p .. '\0' .. string.format('%016.0f', score + LIM_OFFSET) .. '\0' .. id
end

-- the first ready job of partition p: its index entry, id and queue score (nil when none);
-- with n = 2 also whether another entry follows it; `skip`: entries of p passed over first
local function lim_head(pq, p, n, skip)
  local es = redis.call('ZRANGEBYLEX', pq, '[' .. p .. '\0', '(' .. p .. '\1', 'LIMIT', skip or 0,
    n or 1)
  local e = es[1]
  if not e then
    return nil
  end
  local s = #p + 2
  return e, string.sub(e, s + 17), tonumber(string.sub(e, s, s + 15)) - LIM_OFFSET, es[2] ~= nil
end

-- partition p joins the turns, behind the others (kept at its place when already there)
local function lim_ready(P, p)
  if not redis.call('ZSCORE', P.pready, p) then
    redis.call('ZADD', P.pready, redis.call('INCR', P.seq), p)
  end
end

-- job `id` was put on its name's queue with `score`: index it by its partition, if it has one
local function lim_queued(P, id, score, p)
  if not p then
    if not P.on then
      return
    end
    p = redis.call('HGET', P.part, id)
    if not p then
      return
    end
  end
  redis.call('ZADD', P.pq, 0, lim_entry(p, score, id))
  lim_ready(P, p)
end

-- one running job of partition p less (its count dropped at 0)
local function lim_unrun(P, p)
  if redis.call('HINCRBY', P.prun, p, -1) <= 0 then
    redis.call('HDEL', P.prun, p)
  end
end

-- a job left the running jobs (call it behind its in-progress edge only): free its partition's
-- slot and give the partition a turn again when it has ready jobs. True when it got one.
local function lim_release(P, id)
  if not P.on then
    return false
  end
  local p = redis.call('HGET', P.part, id)
  if not p then
    return false
  end
  lim_unrun(P, p)
  if not redis.call('ZSCORE', P.pready, p) and lim_head(P.pq, p) then
    redis.call('ZADD', P.pready, redis.call('INCR', P.seq), p)
    return true
  end
  return false
end

-- "c=1;r=10/1000;R=5/1000" -> {pc = 1, r = {{10, 1000}}, R = {{5, 1000}}}, or nil and why
-- when a term is malformed (check every spec before the first write). Rates of one kind with
-- the same window share a log field: they are merged (the lowest limit holds), so a start is
-- counted once. A window is at most LIM_MAX_PER ms (limits/spec.py's MAX_PER_MS, 366 days):
-- a longer one failed PEXPIRE of the rate log after the first write (10^20 ms), and a count of
-- more than 15 digits is not a whole number a double holds. At most LIM_MAX_WINDOWS distinct
-- windows of each kind (limits/spec.py's MAX_WINDOWS): a fetch and a settle read and write
-- each window's log, so a call's work is bounded by the spec's length otherwise.
local LIM_MAX_PER = 31622400000
local LIM_MAX_WINDOWS = 16
local function lim_spec(s)
  local L = {pc = 0, r = {}, R = {}}
  if s == '' then
    return L
  end
  local seen = {}
  for term in string.gmatch(s .. ';', '([^;]*);') do
    local kind, a, b = string.match(term, '^([rR])=(%d+)/(%d+)$')
    if not kind then
      kind, a = string.match(term, '^(c)=(%d+)$')
    end
    if kind and (#a > 15 or (b and #b > 15)) then
      kind = nil
    end
    a, b = tonumber(a), tonumber(b)
    if not kind or a < 1 or (b and (b < 1 or b > LIM_MAX_PER)) then
      return nil, 'malformed limits spec ' .. s .. ' (term ' .. term .. ')'
    end
    if kind == 'c' then
      L.pc = (L.pc > 0) and math.min(L.pc, a) or a
    elseif seen[kind .. b] then
      seen[kind .. b][1] = math.min(seen[kind .. b][1], a)
    elseif #L[kind] >= LIM_MAX_WINDOWS then
      return nil, 'limits spec ' .. string.sub(s, 1, 200) .. ' has more than ' .. LIM_MAX_WINDOWS ..
        ' rate windows of kind ' .. kind
    else
      seen[kind .. b] = {a, b}
      table.insert(L[kind], seen[kind .. b])
    end
  end
  return L
end

-- A rate log: '#', the starts counted before its first record (LIM_C digits), then one record
-- per ms with starts, in time order: the time (LIM_W digits) and the starts counted up to and
-- including it (LIM_C digits). A fetch of 32 jobs writes one record, so a log holds at most as
-- many records as calls that started something in its window. An older log (a digit first: one
-- time per start) is read as records of one start each, and written back in this form.
local LIM_C = 10
local LIM_R = LIM_W + LIM_C
local LIM_EMPTY = '#' .. string.rep('0', LIM_C)

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

-- the part of a rate log still in the window ending at now (a start at t counts until t + per
-- inclusive), and how many starts it holds. The first live record is found by bisection, and a
-- log that is all live is not copied.
local function lim_live(log, per, now)
  if log == '' then
    log = LIM_EMPTY
  elseif string.sub(log, 1, 1) ~= '#' then
    log = lim_upgrade(log)
  end
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
local LIM_SEEN = {}

-- the live part of a rate log and how many starts it holds
local function lim_read(h, field, per, now)
  local seen = LIM_SEEN[h .. '\0' .. field]
  if seen then
    local live, count = lim_live(seen, per, now)
    return live, count
  end
  local live, count = lim_live(redis.call('HGET', h, field) or '', per, now)
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

-- record `count` starts at now in a rate log (its counts start again from 0 near LIM_C digits)
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
  if m > 0 and lim_at(live, m) == now then
    live = string.sub(live, 1, #live - LIM_C) .. string.format('%010d', cum)
  else
    live = live .. string.format('%013d%010d', now, cum)
  end
  redis.call('HSET', P.prate, field, live)
  LIM_SEEN[P.prate .. '\0' .. field] = live
  if P.prexp then
    redis.call('ZADD', P.prexp, now + per + 1, field)
  end
end

-- A start counted at `at` (ms) that never happened: a job fetched ahead and given back before it
-- started (settle.lua). The log with that start uncounted (one start less at `at`, its record
-- dropped when it then holds none); nil when the log holds no start at `at` (cut: its window
-- passed) or is not a log. Reads nothing, raises on nothing.
local function lim_uncounted(log, at)
  if string.find(log, '^%d+$') and #log % LIM_W == 0 then
    log = lim_upgrade(log)
  end
  if not string.find(log, '^#%d+$') or (#log - 1 - LIM_C) % LIM_R ~= 0 then
    return nil
  end
  local n = (#log - 1 - LIM_C) / LIM_R
  -- the first record at or after `at`
  local lo = lim_first(1, n + 1, function(i) return lim_at(log, i) < at end)
  local before = lim_cum(log, lo - 1)
  if lo > n or lim_at(log, lo) ~= at or lim_cum(log, lo) <= before then
    return nil
  end
  local parts = {string.sub(log, 1, 1 + LIM_C + (lo - 1) * LIM_R)}
  if lim_cum(log, lo) - 1 > before then
    parts[2] = string.format('%013d%010d', at, lim_cum(log, lo) - 1)
  end
  for i = lo + 1, n do
    parts[#parts + 1] = string.format('%013d%010d', lim_at(log, i), lim_cum(log, i) - 1)
  end
  return table.concat(parts)
end

-- why `at` and `spec` (a give-back's start to uncount: ARGV of settle.lua) are not one ('' and
-- '' are none), or nil
local function lim_bad_unstart(at, spec)
  if (at or '') == '' and (spec or '') == '' then
    return nil
  end
  local n = tonumber(at)
  if not (n and n == math.floor(n) and n >= 0 and n < 1e13) then
    return 'errands: settle: bad start to uncount ' .. tostring(at)
  end
  local L, why = lim_spec(spec or '')
  return (not L) and ('errands: settle: ' .. why) or nil
end

-- job `id`, whose fetch counted its start at `at` in the rates of spec L, goes back unstarted:
-- the rate logs with that start uncounted, as {field, log, ...} for HSET of P.prate (reads
-- only: call it before the first write). The type-wide rates, and those of its partition.
local function lim_unstarts(P, L, id, at)
  local fields = {}
  for _, r in ipairs(L.r) do
    fields[#fields + 1] = tostring(r[2])
  end
  local p = #L.R > 0 and P.on and redis.call('HGET', P.part, id)
  if p then
    for _, r in ipairs(L.R) do
      fields[#fields + 1] = r[2] .. ':' .. p
    end
  end
  local out = {}
  for _, field in ipairs(fields) do
    local log = lim_uncounted(redis.call('HGET', P.prate, field) or '', at)
    if log then
      out[#out + 1] = field
      out[#out + 1] = log
    end
  end
  return out
end

-- after writing rate logs: logs past their window go (a few per call), and both keys live at
-- least a window longer (so a job name nobody fetches any more leaves nothing behind)
local function lim_tidy(P, per, now)
  local old = redis.call('ZRANGEBYSCORE', P.prexp, '-inf', now, 'LIMIT', 0, 32)
  if #old > 0 then
    redis.call('HDEL', P.prate, unpack(old))
    redis.call('ZREM', P.prexp, unpack(old))
  end
  for _, key in ipairs({P.prate, P.prexp}) do
    if redis.call('PTTL', key) < per + 1000 then
      redis.call('PEXPIRE', key, per + 1000)
    end
  end
end

-- the type-wide rates: how many starts they allow now; note(ms) is told when one is exhausted
local function lim_type_room(P, L, room, now, note)
  for _, r in ipairs(L.r) do
    local n, free = lim_room(P.prate, tostring(r[2]), r[1], r[2], now)
    if n < room then
      room = n
    end
    if n == 0 then
      note(free)
    end
  end
  return room
end

-- `got` jobs of the name started now: count them in the type-wide rates
local function lim_type_started(P, L, got, now)
  local per = 0
  for _, r in ipairs(L.r) do
    lim_started(P, tostring(r[2]), r[1], r[2], now, got)
    per = math.max(per, r[2])
  end
  return per
end

-- when partition p may start a job again by its rates (0 = now)
local function lim_part_free(P, L, p, now)
  local free = 0
  for _, r in ipairs(L.R) do
    local n, f = lim_room(P.prate, r[2] .. ':' .. p, r[1], r[2], now)
    if n == 0 and f > free then
      free = f
    end
  end
  return free
end

-- serve the partitions of one job name in turn: at most `room` jobs, each the first ready job
-- of the partition whose turn it is, within the partition's limits. runnable(ids) gives the
-- envelope of each job that may run (false for the others; it sees the jobs taken before);
-- take(id, env, score) moves one to the pool; note(ms) is told when a rate-limited partition may
-- start again. Bounded: 4 x room + 16 partitions looked at.
-- Rounds: the next partitions in turn (as many as jobs still wanted), their heads looked up,
-- then read together (queue scores, envelopes and attempts, running counts) and served in
-- order; those served that have more go to the back in one ZADD before the next round. A
-- partition whose head is stale stays at the front: its next entry is looked at next round.
-- Returns the jobs taken and the longest rate window written (for lim_tidy).
local function lim_serve(P, L, room, now, runnable, take, note)
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', P.pwait, '-inf', now, 'LIMIT', 0, 64)) do
    redis.call('ZREM', P.pwait, p)
    lim_ready(P, p)
  end
  local got, budget, per = 0, 4 * room + 16, 0
  for _, r in ipairs(L.R) do
    per = math.max(per, r[2])
  end
  -- turns for the partitions sent to the back, taken from `seq` a block at a time
  local turn, turns_left = 0, 0
  local gone = {}  -- queue entries taken or dropped here, removed from the queue in one call
  -- their index entries, removed from the partition queue at the end (in one call per 1,000);
  -- until then each partition's head is looked for past those of it passed here
  local pq_gone, passed = {}, {}
  local function pass(p, e)
    pq_gone[#pq_gone + 1] = e
    passed[p] = (passed[p] or 0) + 1
  end
  while got < room and budget > 0 do
    local front = redis.call('ZRANGE', P.pready, 0, math.min(room - got, budget, 1000) - 1)
    if #front == 0 then
      break
    end
    local heads, ids, parts = {}, {}, {}
    for j, p in ipairs(front) do
      local e, id, score, more = lim_head(P.pq, p, 2, passed[p])
      heads[j] = {p, e, id, score, more}
      if e then
        ids[#ids + 1], parts[#parts + 1] = id, p
      end
    end
    local qs = read_zmscore(P.q, ids)  -- (lib/chunked: ZSCOREs under an older rule)
    local envs = runnable(ids)
    local runs = read_chunked('HMGET', P.prun, parts)
    local back, counts, x = {}, {}, 0
    for _, h in ipairs(heads) do
      budget = budget - 1
      local p, e, id, score, more = h[1], h[2], h[3], h[4], h[5]
      if not e then
        redis.call('ZREM', P.pready, p)  -- drained
      else
        x = x + 1
        local queued = qs[x] and tonumber(qs[x]) == score
        local env = queued and envs[x]
        local running = tonumber(runs[x] or '0')
        if not env then
          -- a stale entry (the job left the queue), or a job gone or running: dropped, as the
          -- plain fetch drops such queue entries; the partition stays at the front
          pass(p, e)
          if queued then
            gone[#gone + 1] = id
          end
        elseif got >= room then  -- (only after stale entries: the rest wait their turn)
        elseif L.pc > 0 and running >= L.pc then
          redis.call('ZREM', P.pready, p)  -- busy: lim_release gives it a turn again
        else
          local free = lim_part_free(P, L, p, now)
          if free > 0 then
            redis.call('ZREM', P.pready, p)
            redis.call('ZADD', P.pwait, free, p)
            note(free)
          else
            gone[#gone + 1] = id
            pass(p, e)
            take(id, env, score)
            counts[#counts + 1] = p
            counts[#counts + 1] = running + 1
            for _, r in ipairs(L.R) do
              lim_started(P, r[2] .. ':' .. p, r[1], r[2], now, 1)
            end
            if more then
              if turns_left == 0 then
                turns_left = room - got
                turn = redis.call('INCRBY', P.seq, turns_left) - turns_left
              end
              turn, turns_left = turn + 1, turns_left - 1
              back[#back + 1] = turn  -- to the back
              back[#back + 1] = p
            else
              redis.call('ZREM', P.pready, p)  -- drained: nothing of it stays behind
            end
            got = got + 1
          end
        end
      end
    end
    call_chunked('HSET', P.prun, counts)
    call_chunked('ZADD', P.pready, back)
  end
  call_chunked('ZREM', P.q, gone)
  call_chunked('ZREM', P.pq, pq_gone)
  local head = redis.call('ZRANGE', P.pwait, 0, 0, 'WITHSCORES')
  if head[2] then
    note(tonumber(head[2]))
  end
  return got, (got > 0) and per or 0
end
