-- lib/fetchcheck: fetch.lua's checks of its keys before its first write (included by
-- `--@include fetchcheck` after types), with fetch.lua's KEYS and ARGV (see its header: K keys
-- before Q per job name, nq names).

-- fetch_found(outcome): what the call finds in the keys that only some calls use, each read
-- with redis.pcall: partitioned (partitions holds a field: lib/types.lua's any_field), others
-- (dedup_of_job, unique_of_job or listening exists too), deduped (dedup_of_job holds a field),
-- unique (unique_of_job holds one: some job holds a unique lock), then the error reply naming
-- the first of partitions, dedup_of_job and unique_of_job of another type (lib/types.lua's
-- wrong_key; fetch_types gives it, after the lease's checks), else nil. One EXISTS of the four
-- while none exists (the common case).
local function fetch_found(outcome)
  local present = redis.call('EXISTS', KEYS[17], KEYS[7], KEYS[14], KEYS[9])
  if present == 0 then
    return false, false, false, false, nil
  end
  local partitioned, wrong = any_field(KEYS[14], outcome)
  if present == (partitioned and 1 or 0) then
    return partitioned, false, false, false, wrong
  end
  local deduped, wrong_dedup = any_field(KEYS[17], outcome)
  local unique, wrong_unique = any_field(KEYS[7], outcome)
  return partitioned, true, deduped, unique, wrong or wrong_dedup or wrong_unique
end

-- fetch_skip(counts, nq): queue i -> the first 40 characters of its name's `running` count,
-- counts[i] (HMGET's reply of the nq names), for each that is not a counter, else false
local function fetch_skip(counts, nq)
  local skip = false
  for i = 1, nq do
    if not is_counter(counts[i]) then
      skip = skip or {}
      skip[i] = string.sub(counts[i], 1, 40)
    end
  end
  return skip
end

-- fetch_own_keys(K, Q, nq, check, partitioned, rated, skip): fetch_types' skip (fetch_skip's,
-- or false) with the names one of whose own keys (not the arming key after them: of any type)
-- holds another type, each as {that key} (a `running` count that is not a counter said first).
-- Their other keys are not read, but the idle set: the name's mark is written or goes.
-- check(j, cmd): KEYS[j] when it holds another type, else nil (its answer kept)
local function fetch_own_keys(K, Q, nq, check, partitioned, rated, skip)
  for i = 1, nq do
    local b = K + (i - 1) * Q
    local bad = check(b + 1, 'ZCARD') or partitioned and (check(b + 2, 'ZCARD')
        or check(b + 3, 'ZCARD') or check(b + 4, 'ZCARD') or check(b + 5, 'HLEN'))
      or rated[i] and (check(b + 6, 'HLEN') or check(b + 7, 'ZCARD'))
    bad = check(b + 8, 'ZCARD') or bad
    if bad then
      skip = skip or {}
      skip[i] = skip[i] or {bad}
    end
  end
  return skip
end

-- fetch_types(K, Q, nq, unique, partitioned, deduped, rated, wrong_found, names, isolating):
-- the error reply naming the first of its shared keys (KEYS[1..18]) of another type than this
-- call needs (wrong_found first: the one fetch_found gives), or a counter it INCRs that is not
-- one, else nil, then each checked key's answer (as lib/types.lua's wrong_type gives them),
-- paused_of (paused_of[1]: SISMEMBER's answer of the one name, when there is one) and skip:
-- queue i -> why its name is left alone, or false when none is (the common case): the value of
-- its name's `running` count when that is not a counter (lib/types.lua's is_counter), else {key}
-- when one of the name's own keys (its queue, its limits' keys, its idle set) holds another
-- type. The call serves the other names and touches nothing of that one (lib/types.lua's
-- skipped_list; its idle set's mark goes unless that is the key). unique, partitioned, deduped:
-- what the call found; rated[i]: whether job name i has a rate; names[i]: job name i; isolating:
-- isolation is on (ARGV[5] > 0: recoveries is read). Written out for fetch.lua's key layout
-- (K = 18 keys, then Q = 8 per job name: KEYS[1..18] and b + 1..8 are checked by number here)
local function fetch_types(K, Q, nq, unique, partitioned, deduped, rated, wrong_found, names,
    isolating)
  -- the keys this call touches, by what it found: read before the first write, those read
  -- first are checked by those reads (pools by fetch.lua's ZSCORE, unique_of_job, dedup_of_job
  -- and partitions by fetch_found), and lib/events.lua reads `listening` with pcall; recoveries
  -- here, when isolation is on (its HLEN: whether any job was recovered). Two are checked by the
  -- reads this call makes of them anyway: running by the HMGET of its names' counts (HINCRBY'd
  -- after writes; with at least one name), paused by the SISMEMBER of the name when there is one
  -- (with more, each is asked when its turn comes)
  local counts, paused_of, sizes = false, {}, {}
  -- (in key order, each key's check sent in place, as lib/types.lua's wrong_type sends them:
  -- written out, not looked up in a list per key; a call of fewer keys: those given). Answers
  -- the key when it holds another type, else nil
  local function check(j, cmd)
    local key = KEYS[j]
    if not key then return nil end
    local got = redis.pcall(cmd, key)
    if type(got) == 'table' and got.err then
      return key
    end
    sizes[j] = got
  end
  local wrong = check(1, 'HLEN')
  if not wrong and nq > 0 then
    counts = redis.pcall('HMGET', KEYS[2], unpack(names))
    -- (a key of another type: checked again by check, which names it)
    wrong = counts.err and check(2, 'HLEN')
  else
    wrong = wrong or check(2, 'HLEN')
  end
  wrong = wrong or check(3, 'ZCARD')
  if not wrong and nq == 1 then
    local got = redis.pcall('SISMEMBER', KEYS[4], names[1])
    paused_of[1] = got
    wrong = type(got) == 'table' and got.err and check(4, 'SCARD')
  else
    wrong = wrong or check(4, 'SCARD')
  end
  wrong = wrong or check(5, 'SCARD') or unique and (check(6, 'HLEN') or check(8, 'ZCARD'))
    or isolating and check(10, 'HLEN') or check(12, 'HLEN') or check(13, 'GET')
    or deduped and check(16, 'HLEN') or partitioned and check(18, 'HLEN')
  if wrong then
    return wrong_found or wrong_key(wrong, 'nothing fetched')
  end
  -- the counters INCRed after the first write (the first job taken, a partition's turn: seq's
  -- GET): the attempt counter as read above; running[name] of each name as its HMGET read it
  -- (one that is not a counter: its name skipped, not the call failed)
  wrong = wrong_found or not_counter_value(KEYS[13], sizes[13], 'nothing fetched')
    or (partitioned and not_counter(KEYS[15], 'nothing fetched'))
  if wrong then
    return wrong
  end
  return nil, sizes, paused_of, fetch_own_keys(K, Q, nq, check, partitioned, rated,
    counts and fetch_skip(counts, nq))
end

-- fetch_cursor(key, name): where the scan of job name `name` past a run of partitioned entries
-- goes on (pscan's field, a queue score a fetch wrote in Redis' spelling, re-spelt so:
-- '%.17g', as ' 5 ' Lua reads and ZRANGEBYSCORE refused), or nil. A field that is not a score
-- (written by hand: 'abc', 'nan', '') is said in the Redis log, deleted and read as none (the
-- scan goes on from the queue's head): read after the call's first write, it raised there
-- (compared, or in ZRANGEBYSCORE), each fetch taking a job into its pool without its `running`
-- slot or a reply
local function fetch_cursor(key, name)
  local raw = redis.call('HGET', key, name)
  local at = raw and tonumber(raw)
  if raw and not (at and at == at) then
    redis.log(redis.LOG_WARNING, 'errands: ' .. key .. ' field ' .. name .. ' holds '
      .. string.sub(raw, 1, 40) .. ', not a queue score: read as none (deleted)')
    redis.call('HDEL', key, name)
    return nil
  end
  return raw and string.format('%.17g', at)
end
