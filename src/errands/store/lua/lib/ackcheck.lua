-- lib/ackcheck: ack.lua's checks before its first write (included by `--@include ackcheck`
-- after types): its arguments and the types of its keys, with ack.lua's KEYS and ARGV (see its
-- header; B = 25 keys before the done records).

-- ack_names(names, name_of, bad_ttl): fills name_of (name index -> its name) from ARGV; the
-- error reply naming a name listed twice (each index would free its slots from the same read)
-- or given a bad TTL (bad_ttl), else nil
local function ack_names(names, name_of, bad_ttl)
  local listed = {}
  for qi = 1, names do
    local name = ARGV[7 + 2 * qi]
    name_of[qi] = name
    if listed[name] then
      return redis.error_reply('errands: ack: name ' .. name .. ' listed twice: nothing '
        .. 'acknowledged')
    end
    listed[name] = true
    if bad_ttl(ARGV[8 + 2 * qi]) then
      return redis.error_reply('errands: ack: name ' .. name .. ': bad result TTL ('
        .. ARGV[8 + 2 * qi] .. '): nothing acknowledged')
    end
  end
end

-- ack_args(n, names, x, J): (J: the first job's id in ARGV, six a job, then the extras from
-- J + 6n, four each) nil, then qis (job j -> its name index, j from 0), ids (1-based),
-- the distinct names of the jobs in the order of their first job, name_of (name index -> its
-- name), extra_at (job j -> the place in ARGV of its extras, when given) and ttl_of (TTL string
-- -> its number), when every name's and extra's TTL is within 0..MAX_MS, every job's name index
-- within 1..names, no name listed twice, every extra's job place within 1..n and after the one
-- before (one per job at most) and every start and attempt spelt as Redis reads an integer
-- (lib/types.lua is_int), else the error reply naming the first bad name, job or extra. Each
-- distinct index, start and attempt is checked once (a call's jobs share their name index and
-- attempt mostly): qi_of, string -> its name index or false; int_ok, string -> is_int's verdict
local function ack_args(n, names, x, J)
  local qis, ids, name_list, name_of, extra_at, ttl_of = {}, {}, {}, {}, {}, {}
  local function bad_ttl(ttl)
    if ttl_of[ttl] == nil then
      ttl_of[ttl] = is_int(ttl, 0, MAX_MS) and tonumber(ttl)
    end
    return not ttl_of[ttl]
  end
  local wrong = ack_names(names, name_of, bad_ttl)
  if wrong then
    return wrong
  end
  local last = 0
  for e = J + 6 * n, J + 6 * n + 4 * (x - 1), 4 do
    local place = tonumber(ARGV[e])
    if not (is_whole(place) and place > last and place <= n) or bad_ttl(ARGV[e + 1]) then
      return redis.error_reply('errands: ack: extras of job ' .. ARGV[e] .. ': bad place (after '
        .. last .. ', at most ' .. n .. ') or result TTL (' .. ARGV[e + 1]
        .. '): nothing acknowledged')
    end
    extra_at[place - 1], last = e, place
  end
  local qi_of, int_ok, used = {}, {}, {}
  for j = 0, n - 1 do
    local o = J + 6 * j
    local s, start, attempt = ARGV[o + 1], ARGV[o + 3], ARGV[o + 4]
    local qi = qi_of[s]
    if qi == nil then
      qi = tonumber(s)
      qi = is_whole(qi) and qi >= 1 and qi <= names and qi
      qi_of[s] = qi
    end
    if int_ok[start] == nil then
      int_ok[start] = is_int(start)
    end
    if int_ok[attempt] == nil then
      int_ok[attempt] = is_int(attempt)
    end
    if not (qi and int_ok[start] and int_ok[attempt]) then
      return redis.error_reply('errands: ack: job ' .. ARGV[o] .. ': bad name index, start or '
        .. 'attempt (' .. s .. ', ' .. start .. ', ' .. attempt .. '): nothing acknowledged')
    end
    qis[j], ids[j + 1] = qi, ARGV[o]
    if not used[qi] then  -- (each index its own name: ack_names)
      used[qi] = true
      name_list[#name_list + 1] = name_of[qi]
    end
  end
  return nil, qis, ids, name_list, name_of, extra_at, ttl_of
end

-- ack_read(key, ids): HMGET's answer of `ids` (at most ACK_MAX: one command) from hash `key`,
-- sent with redis.pcall: nil and lib/types.lua's wrong_key error reply when `key` holds another
-- type (a read before the first write checks the key's type: ack_types does not ask again)
local function ack_read(key, ids)
  if #ids == 0 then
    return {}
  end
  local got = redis.pcall('HMGET', key, unpack(ids))
  if got.err then
    return nil, wrong_key(key, 'nothing acknowledged')
  end
  return got
end

-- ack_destroyed(cancelreq, ids, stats, pass, bad): id -> true for the jobs whose destroy was
-- requested while they ran (cancel.lua; their pool had not acted on it yet), read with one HMGET
-- (ids: ACK_MAX at most; the hash's type checked by ack_types); then, when one of them is to be
-- acknowledged (pass[j] still true, job j 0-based: past the fence and the entry checks), stats'
-- `cancelled` (which counts them) read (lib/types.lua's read_stats: nil, or the error reply of
-- another type, then `bad` with `cancelled` added when it is not a counter: ack.lua's stat_add
-- replaces it). ack.lua asks only while a cancel request exists (cancelreq false: nil).
local ACK_CANCELLED = {'cancelled'}  -- (stats' field: read only)
local function ack_destroyed(cancelreq, ids, stats, pass, bad)
  if not cancelreq then
    return nil, nil, bad
  end
  local destroyed, any = {}, false
  for j, request in ipairs(ack_read(cancelreq, ids) or {}) do
    if request == 'destroy' then
      destroyed[ids[j]], any = true, any or pass[j - 1] == true
    end
  end
  if not any then
    return destroyed, nil, bad
  end
  return destroyed, read_stats(stats, ACK_CANCELLED, 'nothing acknowledged', bad)
end

-- ack_fence(n, J, ids, extra_at, att): each job's attempt record read from `att` (ack_read: its
-- type checked), then pass (job j -> true when its attempt is this pool's, 'again' for an id
-- given before in the call that passed), seen (id -> true when an entry of it passed), need (the
-- ids whose stored envelope the records need: no envelope given as an extra; `ids` itself while
-- each job so far needs one, copied at the first that does not) and env_at (job j -> its place
-- in need, set past that first job only: j + 1 before it); or the error reply of ack_read. The
-- attempt record "<pool>:<token>" is made once per token (a call's jobs share it mostly).
local function ack_fence(n, J, ids, extra_at, att)
  local atts, wrong = ack_read(att, ids)
  if not atts then
    return wrong
  end
  local pass, seen, need, env_at = {}, {}, ids, {}
  local fence, attempt_of, nn = ARGV[7] .. ':', {}, 0  -- (attempt token -> record; #need)
  for j = 0, n - 1 do
    local id, e, token = ids[j + 1], extra_at[j], ARGV[J + j * 6 + 5]
    local attempt = attempt_of[token]
    if not attempt then
      attempt = fence .. token
      attempt_of[token] = attempt
    end
    local needs = false
    if seen[id] then
      pass[j] = 'again'  -- (given twice: the first is this call's)
    elseif atts[j + 1] == attempt then
      pass[j] = true
      seen[id] = true  -- (only an entry that passes: a stale one before it must not hide it)
      needs = not e or ARGV[e + 2] == ''
    end
    if needs then
      nn = nn + 1
      if need ~= ids then
        need[nn], env_at[j] = id, nn
      end
    elseif need == ids then
      need = {unpack(ids, 1, nn)}  -- (n <= ACK_MAX)
    end
  end
  return nil, pass, seen, need, env_at
end

local ACK_PROCESSED = {'processed'}  -- (stats' field: read only)
-- the hashes forget HDELs that ack.lua leaves out when absent (their key indexes; read only)
local ACK_FORGET = {4, 5, 9, 11, 12, 18}
-- ack_types(jobs, history, unique, deduped, workflows, name_list, rare): the error reply naming
-- the first of ack.lua's shared keys (KEYS[1..25], in key order) of another type than its writes
-- need (each name's own keys are not asked: lib/ackparts.lua's ack_name_keys leaves its jobs
-- alone) (each read with redis.pcall, as lib/types.lua's wrong_type reads), or nil, size (key
-- index -> its HLEN's, ZCARD's or SCARD's answer), the stats fields to repair (lib/types.lua's
-- unfit_stats: {processed = true} when it is not a counter, else nil) and the names of
-- `name_list` whose `running` count is not a counter (unfit_names: unfit_stats by a name that
-- says so; name -> true, else nil: their jobs are left alone, lib/ackparts.lua's
-- ack_names_unfit). The
-- counters are read with the HMGET their check needs in the places of their keys' type checks;
-- dedup_of_job is not asked (ack.lua's any_field read it), nor attempts (ack_fence's read).
-- `jobs`: the jobs hash was not read (no envelope needed: else ack_read read it). `rare`
-- false: priorities, recoveries, checkins, cancel requests and checkpoints are absent (ack.lua's
-- EXISTS): not asked, their sizes 0.
local function ack_types(jobs, history, unique, deduped, workflows, name_list, rare)
  local size, counts = {}, {}  -- key index -> its HLEN's (ZCARD's, SCARD's) answer; HMGET's
  if not rare then  -- (each of them absent: not asked, its size 0)
    size[4], size[5], size[9], size[12], size[18] = 0, 0, 0, 0, 0
  end
  local function check(j, cmd)
    local got = redis.pcall(cmd, KEYS[j])
    size[j] = got
    if type(got) == 'table' and got.err then
      return wrong_key(KEYS[j], 'nothing acknowledged')
    end
  end
  local function fields(j, list)  -- (an HMGET of the counters, in place of the key's HLEN)
    if #list == 0 then
      return check(j, 'HLEN')
    end
    local got = redis.pcall('HMGET', KEYS[j], unpack(list))
    counts[j] = got
    if got.err then
      return wrong_key(KEYS[j], 'nothing acknowledged')
    end
  end
  -- (in key order, each key's check as its writes need it, written out: no list of 25 walked)
  local wrong = jobs and check(1, 'HLEN') or fields(2, name_list) or check(3, 'ZCARD')
    or rare and (check(4, 'HLEN') or check(5, 'HLEN')) or fields(6, ACK_PROCESSED)
    or check(7, 'SCARD') or history and check(8, 'HLEN') or rare and check(9, 'HLEN')
    or check(11, 'HLEN') or rare and check(12, 'HLEN')
    or unique and (check(15, 'HLEN') or check(16, 'ZCARD')) or check(17, 'ZCARD')
    or rare and check(18, 'HLEN') or deduped and check(19, 'HLEN')
    or workflows and check(21, 'HLEN') or deduped and (check(22, 'HLEN') or check(23, 'ZCARD'))
  -- (each name's own keys: lib/ackparts.lua's ack_name_keys and ack_part_unfit, before)
  if wrong then
    return wrong
  end
  -- (the names' `running` counts are flagged as the stats fields are: the same test, under a
  -- name that says what it flags here; a local, not one more function built per call)
  local unfit_names = unfit_stats
  return nil, size, counts[6] and unfit_stats(ACK_PROCESSED, counts[6]),
    counts[2] and unfit_names(name_list, counts[2])
end

-- the in-progress entries "<id>:<name>" of the jobs that pass the fence (pass[j] == true), in
-- the call's order, and whether they are distinct: entries of distinct ids are, unless a name
-- holds ':' (job "a:b" of name c and job "a" of name b:c have one entry)
local function ack_entries(n, pass, ids, qis, name_of, names)
  local entries, ne = {}, 0
  for j = 0, n - 1 do
    if pass[j] == true then
      ne = ne + 1
      entries[ne] = ids[j + 1] .. ':' .. name_of[qis[j]]
    end
  end
  local distinct = true
  for qi = 1, names do
    distinct = distinct and not string.find(name_of[qi], ':', 1, true)
  end
  return entries, distinct
end

-- ack_gone(n, names, pass, ids, qis, name_of, held_size, unfit): the in-progress entries of the
-- jobs that pass (pass[j] == true; the set's type checked by ack_types, its size held_size),
-- those ack.lua removes: read with one
-- ZRANGE of the whole set while it holds at most twice as many, else one ZMSCORE per 1,000
-- (lib/chunked.lua read_held, read_zmscore: a ZSCORE each under an ACL rule of an older
-- errands, which refuses ZMSCORE), removed with one ZREM per 1,000 (entries[y], the entry of
-- the y-th job that passes, is in the set when held[y] or member[entries[y]]; gone: the
-- entries of the jobs that still pass after this check, `entries` itself while none fails it,
-- in the set's order when it was read whole)
local function ack_gone(n, names, pass, ids, qis, name_of, held_size, unfit)
  local entries, distinct = ack_entries(n, pass, ids, qis, name_of, names)
  local held, member, in_order = read_held(KEYS[3], entries, held_size, distinct)
  -- an entry naming its job otherwise than its fetch did is left alone as unfit (acknowledged, it
  -- counted `running` down under another name, or not at all, and left its in-progress entry):
  -- its in-progress entry must be "<id>:<name>" and the queue of its name index <prefix>q:<name>
  -- (queue_ok: name index -> whether it is, found once per name index)
  local prefix = string.sub(KEYS[1], 1, -5)  -- (KEYS[1] is <prefix>jobs)
  local queue_ok, y = {}, 0
  local gone = entries
  for j = 0, n - 1 do
    if pass[j] == true then
      y = y + 1
      local qi = qis[j]
      local ok = queue_ok[qi]
      if ok == nil then
        ok = KEYS[25 + n + names + qi] == prefix .. 'q:' .. name_of[qi]
        queue_ok[qi] = ok
      end
      if held then
        ok = ok and held[y]
      else
        ok = ok and member[entries[y]]
      end
      if not ok then
        pass[j] = 'unfit'
        unfit[#unfit + 1] = ids[j + 1]
        if gone == entries then
          gone = leading(entries, y - 1)  -- (lib/chunked.lua)
        end
      elseif gone ~= entries then
        gone[#gone + 1] = entries[y]
      end
    end
  end
  if in_order and gone == entries then  -- (each of `entries`, in the set's order)
    gone = in_order
  end
  return gone
end

-- ack.lua's reply: {done, U, the U ids of `unfit`, then the ids of `refused`} (lists)
local function ack_reply(done, unfit, refused)
  local reply, nu = {done, #unfit}, #unfit
  for u = 1, nu do
    reply[2 + u] = unfit[u]
  end
  for r = 1, #refused do
    reply[2 + nu + r] = refused[r]
  end
  return reply
end
