-- lib/ackparts: ack.lua's checks of its jobs' counts before its first write (included by
-- `--@include ackparts` after limits, types and ackcheck, with ack.lua's KEYS and ARGV: see its
-- header; 25 keys before the done records). A job of a partition whose running count
-- (lib/limits.lua's prun[p]) is not a counter (lib/types.lua's is_counter) is left alone as
-- unfit: freeing its slot writes it after the first write. The partitions are read with one
-- HMGET, the counts with one per name (per 1,000). So is a job of a name whose `running` count
-- is not a counter (ack_names_unfit: lib/ackcheck.lua's ack_types reads the counts), and a job
-- of a name one of whose own keys holds another type (ack_name_keys: its history, its queue,
-- its partition keys; written by hand, a bad restore): it must not hold the other names' jobs.

-- the partitions of the jobs that pass (job j's into part_of[j]), and per name index the list
-- of them (a partition once per job), or the error reply of the partitions' key of another type
local function ack_part_reads(n, ids, qis, pass, part_of)
  -- (lib/ackcheck.lua's ack_read: its type check, ack_types does not ask again; one HMGET)
  local parts, bad = ack_read(KEYS[25], ids)
  if not parts then
    return bad
  end
  local asked = {}
  for j = 0, n - 1 do
    local p = parts[j + 1]
    if p and pass[j] == true then
      local qi = qis[j]
      local list = asked[qi]
      if not list then
        list = {}
        asked[qi] = list
      end
      part_of[j], list[#list + 1] = p, p
    end
  end
  return nil, asked
end

-- ack_part_counts(prun, list, got, counts): the running counts of the partitions `list` of one
-- name read from its hash `prun` into counts (partition -> its count as read; got: HMGET's
-- answer of the first 1,000, one more HMGET per 1,000 after); the partitions whose count is not
-- a counter (partition -> true), or nil
local function ack_part_counts(prun, list, got, counts)
  local bad = nil
  for c = 1, #list, 1000 do
    got = c == 1 and got or redis.call('HMGET', prun, unpack(list, c, math.min(c + 999, #list)))
    for i = 1, #got do
      local p, r = list[c + i - 1], got[i]
      counts[p] = r
      if r and not LIM_NUM[r] and not lim_count(r) then
        bad = bad or {}
        bad[p] = true
      end
    end
  end
  return bad
end

-- ack_part_unfit(n, names, ids, qis, pass, unfit, part_of, run_counts): fills part_of (job j
-- -> its partition, for the jobs that pass) and run_counts (name index -> partition -> its
-- count as read); a job whose partition's count is not a counter, or of a name whose partitions
-- running hash holds another type (read when a job of it in a partition passes: each job of the
-- name then), gets pass[j] = 'unfit', its id added to `unfit` and its part_of cleared. The error
-- reply of the partitions' key of another type, or nil.
local function ack_part_unfit(n, names, ids, qis, pass, unfit, part_of, run_counts)
  local wrong, asked = ack_part_reads(n, ids, qis, pass, part_of)
  if wrong then
    return wrong
  end
  local bad = false  -- name index -> partition -> true when its count is not a counter (or
  -- -> true when the name's partitions running hash holds another type), if any
  for qi, list in pairs(asked) do
    local prun = KEYS[25 + n + 2 * names + 3 * (qi - 1) + 1]
    local got = redis.pcall('HMGET', prun, unpack(list, 1, math.min(#list, 1000)))
    local of = true  -- (the name's own key of another type: its jobs left alone, not the call)
    if not got.err then
      run_counts[qi] = {}
      of = ack_part_counts(prun, list, got, run_counts[qi])
    end
    if of then
      bad = bad or {}
      bad[qi] = of
    end
  end
  if bad then
    for j = 0, n - 1 do
      local of = bad[qis[j]]
      if pass[j] == true and of and (of == true or part_of[j] and of[part_of[j]]) then
        pass[j], part_of[j] = 'unfit', nil
        unfit[#unfit + 1] = ids[j + 1]
      end
    end
  end
end

-- ack_names_unfit(n, qis, name_of, ids, pass, unfit, bad): each job that passes (pass[j] ==
-- true) of a name of `bad` (name -> true: its `running` count is not a counter, ack_types')
-- gets pass[j] = 'unfit' and its id added to `unfit`: counting its slot back would HINCRBY the
-- count after the first write
local function ack_names_unfit(n, qis, name_of, ids, pass, unfit, bad)
  for j = 0, n - 1 do
    if pass[j] == true and bad[name_of[qis[j]]] then
      pass[j] = 'unfit'
      unfit[#unfit + 1] = ids[j + 1]
    end
  end
end

-- ack_name_keys(n, names, history, deduped, partitioned, qis, ids, pass, unfit): each job that
-- passes (pass[j] == true) of a name one of whose own keys this call would write holds another
-- type (its history, when history is on; its queue, when a dedup rerun may go there; its
-- partition queue and partitions ready, when partitioned: ZCARD each, in that order, before the
-- first write) gets pass[j] = 'unfit' and its id added to `unfit`: nothing of it is written
-- (its partitions running hash: ack_part_unfit). One command per key, as ack_types sent them.
local function ack_name_keys(n, names, history, deduped, partitioned, qis, ids, pass, unfit)
  local past, bad = 25 + n, nil  -- (bad: name index -> true)
  local function wrong(j)
    local got = redis.pcall('ZCARD', KEYS[j])
    return type(got) == 'table' and got.err ~= nil
  end
  for qi = 1, names do
    local b = past + 2 * names + 3 * (qi - 1)
    if history and wrong(past + qi) or deduped and wrong(past + names + qi)
        or partitioned and (wrong(b + 2) or wrong(b + 3)) then
      bad = bad or {}
      bad[qi] = true
    end
  end
  for j = 0, bad and n - 1 or -1 do
    if pass[j] == true and bad[qis[j]] then
      pass[j] = 'unfit'
      unfit[#unfit + 1] = ids[j + 1]
    end
  end
end
