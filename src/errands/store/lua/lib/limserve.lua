-- lib/limserve: serving the partitions of one job name in turn (lim_serve, the fetch's), with
-- the helpers of lib/limits.lua (included by `--@include limserve` at its end; the keys and the
-- index are described there).
-- partitions whose rate wait has passed get a turn again (at most 64 per call)
local function lim_unwait(P, now)
  for _, p in ipairs(redis.call('ZRANGEBYSCORE', P.pwait, '-inf', now, 'LIMIT', 0, 64)) do
    redis.call('ZREM', P.pwait, p)
    lim_ready(P, p)
  end
end

-- a serve's index entry e of partition p taken or dropped: removed from the partition queue at
-- the end (in one call per 1,000); until then p's head is looked for after the last one passed
-- here (a partition's entries are passed in index order: a head from the queue is its first
-- queued job, and the stale entries before it are not counted as passed). S.passed (partition ->
-- its last entry passed) is made from the lists by lim_passed, when a look-up needs it.
local function lim_pass(S, p, e)
  local n = #S.pq_gone + 1
  S.pq_gone[n], S.pass_of[n] = e, p
end

-- S.passed, with the entries passed since it was last made
local function lim_passed(S)
  local passed, gone, of = S.passed, S.pq_gone, S.pass_of
  for i = S.folded + 1, #gone do
    passed[of[i]] = gone[i]
  end
  S.folded = #gone
  return passed
end

-- the first n entries of the queue (those a round took or dropped are off it, n <= 1,000): the
-- window (id, score, ...), its ids and their partitions (false: none). The queue orders each
-- partition's jobs as its index does (by queue score), so the first job of a partition in it
-- is the partition's first queued one, found without a look-up in the index.
local function lim_queue_heads(P, n)
  local win = redis.call('ZRANGE', P.q, 0, n - 1, 'WITHSCORES')
  local ids = {}
  for x = 1, #win / 2 do
    ids[x] = win[2 * x - 1]
  end
  return win, ids, #ids > 0 and redis.call('HMGET', P.part, unpack(ids)) or {}
end

-- partition -> the place x of its first job in the window of lim_queue_heads (its id
-- win[2x - 1], its queue score win[2x]), from the window's partitions
local function lim_heads_at(parts)
  local at = {}
  for x = 1, #parts do
    local p = parts[x]
    if p and not at[p] then
      at[p] = x
    end
  end
  return at
end

-- a round whose every partition (front) has its head in the queue window (win, its ids and
-- their partitions): as lim_round's H, with H.lean (H.more and H.qs not made: each head has
-- more, its queue score is H.score; H.envs and H.runs by place j). When the window holds the
-- front's partitions in its order, one job each, the heads are the window itself (no look-up).
-- Else nil and lim_heads_at's map when a partition has no head there.
local function lim_lean_round(P, front, win, wids, parts, runnable)
  local ids, xs, hs, es = wids, false, {}, {}
  for j = 1, #front do
    if parts[j] ~= front[j] then
      ids = false
      break
    end
  end
  if not ids then
    local at = lim_heads_at(parts)
    ids, xs = {}, {}
    for j = 1, #front do
      local x = at[front[j]]
      if not x then
        return nil, at
      end
      ids[j], xs[j] = win[2 * x - 1], x
    end
  end
  local last, digits = -1, ''  -- (lim_entry's spelling, the digits but the last kept)
  for j = 1, #front do
    local p, id = front[j], ids[j]
    -- (as tonumber(): a score Redis spelt, read once)
    local score = win[2 * (xs and xs[j] or j)] + 0
    local v = score + LIM_OFFSET
    if v >= 1e15 and v < 9007199254740992 and v % 1 == 0 then
      local d = v % 10
      local hi = (v - d) / 10
      if hi ~= last then
        last, digits = hi, string.format('%d', hi)
      end
      es[j] = p .. '\0' .. digits .. LIM_STR[d] .. '\0' .. id
    else
      es[j] = lim_entry(p, score, id)
    end
    hs[j] = score
  end
  local H = {p = front, e = es, id = ids, score = hs, lean = true}
  H.envs = runnable(ids)
  H.runs = read_chunked('HMGET', P.prun, front)
  return H
end

-- a round: the next n partitions in turn (n <= 1,000) with their heads, as lists H.p, H.e (index
-- entry, false when none), H.id, H.score, H.more (from the head of the queue, else looked up in
-- the index), then for those with a head, in order, read together: H.qs queue scores, H.envs
-- envelopes (runnable), H.runs running counts. Nil when no partition has a turn. When every
-- head is from the queue, lim_lean_round's H.
-- A head from the queue may have more after it (more: true): a partition served that had none
-- keeps a turn until it comes again and its look-up finds none (drained then), or until the
-- fetch that served it finds the index small and without it (lim_prune); stale index entries
-- before its head go at that look-up.
local function lim_round(P, S, n, runnable)
  local front = redis.call('ZRANGE', P.pready, 0, n - 1 + S.nheld)
  S.reads = S.reads + #front  -- (the held ones read again each round: bounded by lim_serve)
  if S.nheld > 0 then  -- (passed over: the partitions held or of a bad count, lim_serve_head)
    local kept, held, bad = {}, S.iso and S.iso.held or S.bad, S.bad
    for _, p in ipairs(front) do
      if #kept < n and not held[p] and not bad[p] then
        kept[#kept + 1] = p
      end
    end
    front = kept
  end
  if #front == 0 then
    return nil
  end
  local win, wids, parts = lim_queue_heads(P, #front)
  local lean, at = lim_lean_round(P, front, win, wids, parts, runnable)
  if lean then
    return lean
  end
  local es, hids, hs, more, ids, parts, qs = {}, {}, {}, {}, {}, {}, {}
  local H = {p = front, e = es, id = hids, score = hs, more = more, qs = qs}
  local passed = lim_passed(S)
  local asked, where, k = {}, {}, 0  -- k: heads so far (#ids, #parts)
  for j = 1, #front do
    local p = front[j]
    local x = at[p]
    if x then
      local id, score = win[2 * x - 1], tonumber(win[2 * x])
      es[j], hids[j], hs[j], more[j] = lim_entry(p, score, id), id, score, true
      k = k + 1
      qs[k], ids[k], parts[k] = score, id, p  -- (the score read from the queue)
    else
      local e, eid, score, m = lim_head(P.pq, p, 2, passed[p])
      es[j], hids[j], hs[j], more[j] = e or false, eid, score, m
      if e then
        k = k + 1
        ids[k], parts[k] = eid, p
        asked[#asked + 1] = eid
        where[#asked] = k
      end
    end
  end
  -- the queue scores of the heads looked up (lib/chunked: ZSCOREs under an older rule)
  for i, score in ipairs(read_zmscore(P.q, asked)) do
    qs[where[i]] = score
  end
  H.envs = runnable(ids)
  H.runs = read_chunked('HMGET', P.prun, parts)
  return H
end

-- partition p, served, goes to the back of the turns (a turn taken from `seq` a block at a time)
local function lim_back(P, S, p)
  if S.turns_left == 0 then
    S.turns_left = S.room - S.got
    S.turn = redis.call('INCRBY', P.seq, S.turns_left) - S.turns_left
  end
  S.turn, S.turns_left = S.turn + 1, S.turns_left - 1
  local back = S.back
  local b = #back
  back[b + 1], back[b + 2] = lim_turn_str(S.turn), p
end

-- head j of round H (its partition within its limits, `running` its running count) goes to the
-- pool: it is counted in the partition's rates, and the partition goes to the back of the turns
-- (a turn taken from `seq` a block at a time) or, with nothing more, out of them
local function lim_take_head(P, L, S, H, j, env, running)
  local p, id = H.p[j], H.id[j]
  S.gone[#S.gone + 1] = id
  lim_pass(S, p, H.e[j])
  S.take(id, env, H.score[j])
  local counts = S.counts
  local c = #counts
  counts[c + 1], counts[c + 2] = p, lim_str(running + 1)
  if #L.R > 0 then
    for _, r in ipairs(L.R) do
      lim_started(P, r[2] .. ':' .. p, r[1], r[2], S.now, 1)
    end
  end
  if H.lean or H.more[j] then
    lim_back(P, S, p)
  else
    S.out[#S.out + 1] = p  -- drained: nothing of it stays behind
  end
  S.got = S.got + 1
end

-- head j of round H, with its queue score q, envelope env and running count run as read; a
-- suspect the pool may not take now is held: nothing counted, its partition keeps its turn. A
-- partition whose count is not a counter is passed over (lim_bad_count) once a call: in S.bad,
-- held from the rounds after as a suspect's is (charged to the budget once)
local function lim_serve_head(P, L, S, H, j, q, env, run)
  local p, id, score = H.p[j], H.id[j], H.score[j]
  local queued = q and (q == score or tonumber(q) == score)  -- (a number when from the queue)
  env = queued and env
  local suspect = not env and queued and S.iso and S.iso.envs[id]
  env = env or suspect
  local running = 0
  if run then
    running = lim_count(run)
  end
  if not env then
    -- a stale entry (the job left the queue), or a job gone or running: dropped, as the
    -- plain fetch drops such queue entries; the partition stays at the front
    lim_pass(S, p, H.e[j])
    if queued then
      S.gone[#S.gone + 1] = id
    end
  elseif S.got >= S.room then  -- (only after stale entries: the rest wait their turn)
  elseif not running then
    lim_bad_count(P, p, run)
    S.bad[p], S.nheld = true, S.nheld + 1
  elseif L.pc > 0 and running >= L.pc then
    S.out[#S.out + 1] = p  -- busy: lim_release gives it a turn again
  else
    local free = #L.R > 0 and lim_part_free(P, L, p, S.now) or 0
    if free > 0 then
      S.out[#S.out + 1] = p
      redis.call('ZADD', P.pwait, free, p)
      S.note(free)
    elseif not suspect then
      lim_take_head(P, L, S, H, j, env, running)
    elseif S.iso.free then
      lim_take_head(P, L, S, H, j, env, running)
      S.iso.free = false
    else  -- (not charged to the budget: the turns read bound them, lim_serve)
      S.iso.held[p], S.nheld, S.budget = true, S.nheld + 1, S.budget + 1
    end
  end
end

-- heads from..to of a lean round H (taken) listed as lim_take_head lists them: their ids in
-- S.gone, their entries passed (lim_pass)
local function lim_list_taken(S, H, from, to)
  local gone, pq_gone, pass_of, ids, es, front = S.gone, S.pq_gone, S.pass_of, H.id, H.e, H.p
  local g, q = #gone, #pq_gone
  for j = from, to do
    g, q = g + 1, q + 1
    gone[g], pq_gone[q], pass_of[q] = ids[j], es[j], front[j]
  end
end

-- round H of lim_lean_round served in order as lim_serve_head serves each head, the common one
-- taken here (runnable, within the room, its running count a small one below the concurrency,
-- the name without rates of partitions; as lim_take_head, with the turns spelt as lim_turn_str
-- does), the others by lim_serve_head (S's counts written back before, read again after).
-- While every head is taken, their ids and entries are not listed one by one: the first round
-- of a call that takes all gives its lists as S.gone, S.pq_gone and S.pass_of.
local function lim_serve_lean(P, L, S, H)
  local front, ids, hs, envs, runs = H.p, H.id, H.score, H.envs, H.runs
  local counts, back = S.counts, S.back
  local take, room, pc, rated = S.take, S.room, L.pc, #L.R > 0
  local got, turn, left = S.got, S.turn, S.turns_left
  local c, b, all = #counts, #back, true
  local last, digits = -1, ''
  S.budget = S.budget - #front
  for j = 1, #front do
    local env, run = envs[j], runs[j]
    local running = not run and 0 or LIM_NUM[run]
    if env and running and not rated and (pc == 0 or running < pc) and got < room then
      local p = front[j]
      if not all then
        lim_list_taken(S, H, j, j)
      end
      take(ids[j], env, hs[j])
      if left == 0 then
        left = room - got
        turn = redis.call('INCRBY', P.seq, left) - left
      end
      turn, left = turn + 1, left - 1
      local t
      if turn >= 10 and turn < 9007199254740992 and turn % 1 == 0 then
        local d = turn % 10
        local hi = (turn - d) / 10
        if hi ~= last then
          last, digits = hi, string.format('%d', hi)
        end
        t = digits .. LIM_STR[d]
      else
        t = lim_turn_str(turn)
      end
      counts[c + 1], counts[c + 2] = p, LIM_STR[running + 1]  -- (lim_str's spelling)
      back[b + 1], back[b + 2] = t, p  -- to the back
      c, b, got = c + 2, b + 2, got + 1
    else
      if all then
        lim_list_taken(S, H, 1, j - 1)
        all = false
      end
      S.got, S.turn, S.turns_left = got, turn, left
      lim_serve_head(P, L, S, H, j, hs[j], env, run)  -- (its queue score: from the queue)
      got, turn, left = S.got, S.turn, S.turns_left
      c, b = #counts, #back
    end
  end
  S.got, S.turn, S.turns_left = got, turn, left
  if all and #S.pq_gone == 0 then
    S.gone, S.pq_gone, S.pass_of = ids, H.e, front  -- (S.gone is the round's: empty before)
  elseif all then
    lim_list_taken(S, H, 1, #front)
  end
end

-- serve the partitions of one job name in turn: at most `room` jobs, each the first ready job
-- of the partition whose turn it is, within the partition's limits. runnable(ids) gives the
-- envelope of each job that may run (false for the others; it sees the jobs taken before);
-- take(id, env, score) moves one to the pool; note(ms) is told when a rate-limited partition may
-- start again. Bounded: 4 x room + 16 partitions looked at; those held (not charged to it, so
-- they do not starve the partitions behind them) and those passed over for a bad count (S.bad:
-- looked at once) read again each round: rounds start while fewer than 4 x (room + 64) + 16
-- turns were read, under twice that in all (without held or bad ones, the reads are the
-- partitions looked at). iso (nil: off): the
-- suspects runnable() answered false for (envs: id -> envelope), whether the pool may take one
-- now (free: one taken makes it false) and the partitions held (held: {}, fetch.lua's).
-- Rounds: the next partitions in turn (as many as jobs still wanted), their heads looked up,
-- then read together (queue scores, envelopes and attempts, running counts) and served in
-- order; those served that have more go to the back in one ZADD before the next round. A
-- partition whose head is stale stays at the front: its next entry is looked at next round.
-- After jobs were taken, the turns of partitions without jobs go when the index is small
-- (lim_prune); a call whose budget went on such turns asks to be called again at once.
-- Returns the jobs taken and the longest rate window written (for lim_tidy); 0, 0 at once when
-- no partition has a turn or waits. P.known (optional): {P.pready's size, P.pwait's} as the call
-- found them before its first write (the first name's: fetch.lua's type checks), not read again;
-- a P.pwait empty then is not read (what the call puts there it notes).
local function lim_serve(P, L, room, now, runnable, take, note, iso)
  local known = P.known
  if known and known[1] + known[2] == 0
      or not known and redis.call('EXISTS', P.pready, P.pwait) == 0 then
    return 0, 0
  end
  local nowait = known and known[2] == 0
  if not nowait then
    lim_unwait(P, now)
  end
  local per = 0
  for _, r in ipairs(L.R) do
    per = math.max(per, r[2])
  end
  local S = {room = room, now = now, take = take, note = note, got = 0, budget = 4 * room + 16,
    turn = 0, turns_left = 0, pq_gone = {}, pass_of = {}, folded = 0, passed = {}, drained = 0,
    iso = iso, nheld = 0, reads = 0, bad = {}}
  while S.got < room and S.budget > 0 and S.reads < 4 * (room + 64) + 16 do
    local H = lim_round(P, S, math.min(room - S.got, S.budget, 1000), runnable)
    if not H then
      break
    end
    -- gone: queue entries taken or dropped in the round, off the queue before the next one;
    -- out: partitions leaving the turns (drained, busy, rate-limited)
    S.back, S.counts, S.gone, S.out = {}, {}, {}, {}
    if H.lean then
      lim_serve_lean(P, L, S, H)
    else
      local x, es = 0, H.e
      for j = 1, #H.p do
        S.budget = S.budget - 1
        if not es[j] then
          S.out[#S.out + 1] = H.p[j]  -- drained
          S.drained = S.drained + 1
        else
          x = x + 1
          lim_serve_head(P, L, S, H, j, H.qs[x], H.envs[x], H.runs[x])
        end
      end
    end
    call_chunked('ZREM', P.pready, S.out)
    call_chunked('HSET', P.prun, S.counts)
    call_chunked('ZADD', P.pready, S.back)
    call_chunked('ZREM', P.q, S.gone)
  end
  call_chunked('ZREM', P.pq, S.pq_gone)
  if S.got > 0 then
    lim_prune(P, 4 * room + 16)
  end
  if S.budget <= 0 and S.got < room and S.drained > 0 and redis.call('EXISTS', P.pready) == 1 then
    -- spent on turns of partitions without jobs, with more in turn: the pool comes back at once,
    -- not after a poll interval (each such call takes some of those turns away)
    note(now + 1)
  end
  local head = not nowait and redis.call('ZRANGE', P.pwait, 0, 0, 'WITHSCORES')
  if head and head[2] then
    note(tonumber(head[2]))
  end
  return S.got, (S.got > 0) and per or 0
end
