-- lib/limits: flow control (included by `--@include limits`). Jobs enqueued with a partition
-- are indexed per job name by partition (`pq`, ordered by member: "<partition>\0<queue
-- score>\0<id>", an index over the job name's queue, which stays the place of a ready job);
-- the partitions that may have ready jobs wait their turn in `pready` (partition -> turn, least
-- recently served first); a partition whose rate limit is exhausted waits in `pwait` (partition
-- -> ms it may start a job again); one whose concurrency is full is in neither until a job of it
-- ends (lim_release). Rates are sliding logs of start times (Redis clock; the format is in
-- lib/ratelog.lua), kept in `prate` ("<per ms>" type-wide, "<per ms>:<partition>") and dropped a
-- window after their last start.
-- A table P names the keys: part (HASH id -> partition), seq (counter for turns), and for one
-- job name: q, pq, pready, pwait, prun (HASH partition -> running), prate, prexp. P.on is
-- whether any job of the namespace has a partition (EXISTS part): without, nothing is looked up.
--@include types
--@include chunked
--@include ratelog
local LIM_OFFSET = 4503599627370496  -- 2^52: queue scores made non-negative for the index

-- small counts read and spelt without strtod and sprintf (a running count is mostly one of them)
local LIM_NUM = {['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6}
local LIM_STR = {[0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}

-- a speller of whole numbers from 10 to below 2^53, as '%d' spells them, in two parts: the
-- digits of all but the last (kept from the number spelt before when the same: a call spells
-- neighbours, turns in a row, the queue scores of jobs enqueued together) and the last digit.
-- One sprintf per ten numbers in a row instead of one each.
local function lim_speller()
  local last, digits = -1, ''
  return function(v)
    local d = v % 10
    local hi = (v - d) / 10
    if hi ~= last then
      last, digits = hi, string.format('%d', hi)
    end
    return digits, LIM_STR[d]
  end
end
local lim_spell_score, lim_spell_turn = lim_speller(), lim_speller()

-- (a whole number below 2^53 is spelt with '%d', which costs a third of '%.0f': the same digits;
-- one of 16 digits, as most are, by lim_spell_score)
local function lim_entry(p, score, id)
  local v = score + LIM_OFFSET
  if v >= 1e15 and v < 9007199254740992 and v % 1 == 0 then
    local hi, d = lim_spell_score(v)
    return p .. '\0' .. hi .. d .. '\0' .. id
  end
  local f = (v >= 0 and v < 9007199254740992 and v == math.floor(v)) and '%016d' or '%016.0f'
  return p .. '\0' .. string.format(f, v) .. '\0' .. id
end

-- c, a running count as HMGET gives it (false: absent): its number (absent: 0), or nil when it
-- is not a counter (lib/types.lua is_counter)
local function lim_count(c)
  if not c then
    return 0
  end
  return LIM_NUM[c] or (is_int(c, -2 ^ 53, 2 ^ 53) and tonumber(c)) or nil
end

-- x, a count, spelt as Redis reads an integer (a number handed to redis.call is spelt with
-- '%.17g': slower, the same digits for a whole number below 2^53); anything else (a fraction,
-- 2^53 and above, where '%d' would cut or wrap it) keeps the '%.17g' spelling
local function lim_str(x)
  local s = LIM_STR[x]
  if s then
    return s
  end
  if x == math.floor(x) and x > -9007199254740992 and x < 9007199254740992 then
    return string.format('%d', x)
  end
  return string.format('%.17g', x)
end

-- t, a turn (from `seq`), spelt as lim_str does; turns given in a row share all but their last
-- digit (lim_spell_turn)
local function lim_turn_str(t)
  if t >= 10 and t < 9007199254740992 and t % 1 == 0 then
    local hi, d = lim_spell_turn(t)
    return hi .. d
  end
  return lim_str(t)
end

-- the first ready job of partition p: its index entry, id and queue score (nil when none);
-- with n = 2 also whether another entry follows it; `after`: an entry of p, only those after
-- it looked at. An entry whose score is not a number (written by hand) has score false: no
-- job's queue score, it is dropped as a stale one (it raised, after the fetch's first write)
local function lim_head(pq, p, n, after)
  local from = after and ('(' .. after) or ('[' .. p .. '\0')
  local es = redis.call('ZRANGEBYLEX', pq, from, '(' .. p .. '\1', 'LIMIT', 0, n or 1)
  local e = es[1]
  if not e then
    return nil
  end
  local s = #p + 2
  local v = tonumber(string.sub(e, s, s + 15))
  return e, string.sub(e, s + 17), v and v - LIM_OFFSET or false, es[2] ~= nil
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

-- jobs of several partitions of one job name left the running jobs (behind their in-progress
-- edges only): `ended` lists each partition once, ended[p] (in `count`) how many of its jobs. As
-- lim_release of each job, in a few commands: the running counts read with one HMGET and written
-- back with one HSET and one HDEL (per 1,000; checked as counters before the first write), the
-- turns looked up with one ZMSCORE; a partition with ready jobs and no turn gets one, behind the
-- others (one INCRBY and one ZADD). True when one got a turn. `read` (optional): partition ->
-- its running count as the caller read it in this call, before any write to it (then not read
-- again).
local function lim_release_all(P, ended, count, read)
  local set, del = {}, {}
  local runs = not read and read_chunked('HMGET', P.prun, ended)
  for i, p in ipairs(ended) do
    local r
    if read then
      r = read[p] or '0'
    else
      r = runs[i] or '0'
    end
    local left = (LIM_NUM[r] or tonumber(r)) - count[p]
    if left > 0 then
      set[#set + 1] = p
      set[#set + 1] = lim_str(left)
    else
      del[#del + 1] = p
    end
  end
  call_chunked('HSET', P.prun, set)
  call_chunked('HDEL', P.prun, del)
  local turns, back = read_zmscore(P.pready, ended), {}
  for i, p in ipairs(ended) do
    if not turns[i] and lim_head(P.pq, p) then
      back[#back + 1] = p
    end
  end
  if #back == 0 then
    return false
  end
  local turn, zadd = redis.call('INCRBY', P.seq, #back) - #back, {}
  for i, p in ipairs(back) do
    zadd[#zadd + 1] = turn + i
    zadd[#zadd + 1] = p
  end
  call_chunked('ZADD', P.pready, zadd)
  return true
end

-- "c=1;r=10/1000;R=5/1000" -> {pc = 1, r = {{10, 1000}}, R = {{5, 1000}}}, or nil and why
-- when a term is malformed (check every spec before the first write). Rates of one kind with
-- the same window share a log field: they are merged (the lowest limit holds), so a start is
-- counted once. A rate's limit is at most LIM_MAX_RATE (limits/spec.py's MAX_RATE): its log's
-- counts are of 10 digits (lib/ratelog.lua), started again from 0 past 9e9, which then leaves
-- the starts of a window, at most the limit, and a call's. A window is at most LIM_MAX_PER ms
-- (limits/spec.py's MAX_PER_MS, 366 days): a longer one failed PEXPIRE of the rate log after
-- the first write (10^20 ms), and a count of
-- more than 15 digits is not a whole number a double holds. At most LIM_MAX_WINDOWS distinct
-- windows of each kind (limits/spec.py's MAX_WINDOWS): a fetch and a settle read and write
-- each window's log, so a call's work is bounded by the spec's length otherwise.
local LIM_MAX_PER = 31622400000
local LIM_MAX_RATE = 1000000000
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
    if not kind or a < 1 or (b and (b < 1 or b > LIM_MAX_PER or a > LIM_MAX_RATE)) then
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

-- why `flag` and `spec` (a give-back's start to uncount: ARGV of settle.lua, '1' and the spec it
-- was fetched under; '' and '' are none) are not one, or nil
local function lim_bad_unstart(flag, spec)
  if (flag or '') == '' and (spec or '') == '' then
    return nil
  end
  if flag ~= '1' then
    return 'errands: settle: bad start to uncount ' .. tostring(flag)
  end
  local L, why = lim_spec(spec or '')
  return (not L) and ('errands: settle: ' .. why) or nil
end

-- the Redis ms a fetch counted its jobs' starts at, as the attempt it gave them records it
-- ("<pool>:<n>@<ms>": fetch.lua, a call with a rate), or nil (none recorded)
local function lim_fetched_at(attempt)
  return tonumber(string.match(attempt or '', ':%d+@(%d+)$'))
end

-- job `id`, whose fetch counted its start at `at` in the rates of spec L, goes back unstarted:
-- the rate logs with that start uncounted, as {field, log, ...} for HSET of P.prate (reads
-- only: call it before the first write). The type-wide rates, and those of its partition.
local function lim_unstarts(P, L, id, at)
  local fields, pers = {}, {}
  for _, r in ipairs(L.r) do
    fields[#fields + 1], pers[#fields + 1] = tostring(r[2]), r[2]
  end
  local p = #L.R > 0 and P.on and redis.call('HGET', P.part, id)
  if p then
    for _, r in ipairs(L.R) do
      fields[#fields + 1], pers[#fields + 1] = r[2] .. ':' .. p, r[2]
    end
  end
  local out, ms = {}, nil
  local now = function()  -- (the Redis clock, asked once, only when lim_uncounted needs it)
    if not ms then
      local t = redis.call('TIME')
      ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return ms
  end
  for i, field in ipairs(fields) do
    local log = lim_uncounted(redis.call('HGET', P.prate, field) or '', at, pers[i], now)
    if log then
      out[#out + 1] = field
      out[#out + 1] = log
    end
  end
  return out
end


-- the type-wide rates: how many starts they allow now; when some are exhausted note(ms) is told
-- the latest of their frees, when all of them allow a start (the earliest woke a pool for a
-- fetch the others still held back)
local function lim_type_room(P, L, room, now, note)
  local free = 0
  for _, r in ipairs(L.r) do
    local n, f = lim_room(P.prate, tostring(r[2]), r[1], r[2], now)
    if n < room then
      room = n
    end
    if n == 0 and f > free then
      free = f
    end
  end
  if free > 0 then
    note(free)
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

-- the turns of partitions kept in turn after their last job (lim_take_head) go when the index
-- holds none of their jobs: all when it is empty, and the rate waits with them (of partitions
-- whose jobs were taken while they waited: a limit changed at run time); when it holds fewer
-- entries than there are turns, and at most `bound`, the turns of the partitions with none in
-- it (partition names hold no control character: an entry's partition ends at its first \0)
local function lim_prune(P, bound)
  local n = redis.call('ZCARD', P.pq)
  if n == 0 then
    redis.call('DEL', P.pready, P.pwait)
    return
  end
  if n > bound or redis.call('ZCARD', P.pready) <= n then
    return
  end
  local parts, seen, keep = {}, {}, {}
  for _, e in ipairs(redis.call('ZRANGE', P.pq, 0, -1)) do
    -- (an entry without a \0, written by hand, is of no partition: it raised here)
    local p = string.sub(e, 1, (string.find(e, '\0', 1, true) or 1) - 1)
    if p ~= '' and not seen[p] then
      seen[p] = true
      parts[#parts + 1] = p
    end
  end
  for i, turn in ipairs(read_zmscore(P.pready, parts)) do
    if turn then
      keep[#keep + 1] = turn
      keep[#keep + 1] = parts[i]
    end
  end
  redis.call('DEL', P.pready)
  call_chunked('ZADD', P.pready, keep)
end

-- partition p's running count `run` is not a counter (lib/types.lua is_counter: written by hand
-- or by a bug; it raised in the middle of a fetch, or took a job and stored nan): no job of it
-- starts, it goes to the back of the turns (served once repaired), and the Redis log says so;
-- P.bad (optional, a list: fetch.lua's reply) gets its job name P.name, p and the first 40
-- characters of its count. Once a call: lim_serve_head looks at p no more in it (S.bad)
local function lim_bad_count(P, p, run)
  local value = string.sub(run, 1, 40)
  redis.log(redis.LOG_WARNING, 'errands: ' .. P.prun .. ' field ' .. p .. ' holds '
    .. value .. ', not a counter: no job of the partition starts until repaired')
  redis.call('ZADD', P.pready, redis.call('INCR', P.seq), p)
  local bad = P.bad
  if bad then
    local n = #bad
    bad[n + 1], bad[n + 2], bad[n + 3] = P.name, p, value
  end
end

-- the serving of partitions in turn (lim_serve, the fetch's)
--@include limserve
