-- lib/types: the checks a script makes before its first write (included by `--@include types`),
-- so that a key of another type or a bad number fails the whole call cleanly instead of raising
-- half-way.

-- wrong_key(key, outcome): the error reply wrong_type gives for `key`, for a script that reads
-- the key anyway before its first write (redis.pcall) instead of checking its type apart
local function wrong_key(key, outcome)
  return redis.error_reply('WRONGTYPE ' .. key .. ' holds another type: ' .. outcome)
end

-- any_field(key, outcome): whether hash `key` holds a field (HLEN, sent with redis.pcall), and
-- wrong_key's error reply when it holds another type (then false): for a key a script reads
-- before its first write to know what the call must do
local function any_field(key, outcome)
  local n = redis.pcall('HLEN', key)
  if type(n) == 'table' then
    return false, wrong_key(key, outcome)
  end
  return n > 0
end

-- wrong_type(cmd_of, outcome[, last]): cmd_of(j) is the read command KEYS[j] must accept (HLEN,
-- GET, SCARD, ZCARD, ...; false or nil: any type) for j up to `last` (default: every key); each is
-- sent with redis.pcall. Returns the error reply naming the first key of another type and saying
-- `outcome` ('no job was stored', ...), or nil when every key fits, and then each checked key's
-- answer (answers[j]: HLEN's, SCARD's or ZCARD's count) for a script to use instead of asking
-- again. (lib/fetchcheck.lua's fetch_types does the same inline for fetch's keys, for speed.)
local function wrong_type(cmd_of, outcome, last)
  local answers = {}
  for j = 1, last or #KEYS do
    local cmd = cmd_of(j)
    if cmd then
      local checked = redis.pcall(cmd, KEYS[j])
      if type(checked) == 'table' and checked.err then
        return wrong_key(KEYS[j], outcome)
      end
      answers[j] = checked
    end
  end
  return nil, answers
end

-- first_unfit(list, cmd): the first key of `list` (key names) that `cmd` (ZCARD, HLEN, ...: a
-- string, or cmd[c] for list[c]; sent with redis.pcall) finds of another type, or nil: for a
-- script that leaves alone what needs that key (a job name's own keys: reap.lua, promote.lua)
-- instead of failing the call
local function first_unfit(list, cmd)
  for c = 1, #list do
    local r = redis.pcall(type(cmd) == 'table' and cmd[c] or cmd, list[c])
    if type(r) == 'table' and r.err then
      return list[c]
    end
  end
  return nil
end

-- is_whole(x): x is a whole finite number (not nil, nan, inf or a fraction); is_priority(x): a
-- whole number in -1000..1000 (lib/prio.lua). tonumber() reads 'nan', 'inf' and '0x10' too.
-- (x % 1 is x - floor(x), exact: 0 for a whole x; nan for inf and nan; no math.floor call)
local function is_whole(x)
  return type(x) == 'number' and x % 1 == 0 and x - x == 0
end

-- whole_of(s): tonumber(s) when it is_whole, else false or nil (a number read once, checked and
-- kept; is_whole's test inline: no call)
local function whole_of(s)
  local x = tonumber(s)
  return x and x % 1 == 0 and x - x == 0 and x
end

-- is_int(s, lo, hi): s spells an integer as Redis reads one (util.c string2ll: '0', or an
-- optional '-' then a digit 1-9 and more digits; not '007', '-0', '+5', ' 5', '0x10', '1e3' nor
-- '1.0', which tonumber() and is_whole() let through), of at most 18 characters (an INCR of it
-- cannot overflow), and within lo..hi when they are given: what a script writes verbatim into a
-- JSON record, or hands to a command that reads an integer (ZADD, SET ... PX, PEXPIRE, INCR).
local function is_int(s, lo, hi)
  if type(s) ~= 'string' or #s > 18 or not (s == '0' or string.match(s, '^%-?[1-9]%d*$')) then
    return false
  end
  if lo == nil and hi == nil then
    return true  -- (no tonumber(): it costs more than the match)
  end
  local x = tonumber(s)
  return (lo == nil or x >= lo) and (hi == nil or x <= hi)
end

-- unwritten(cmd, key[, reply]): `reply`, after a write of nothing: `cmd` ('HDEL' or 'ZREM') of
-- the member '' from `key`, a hash or sorted set whose type the caller checked, where no job id,
-- node id or in-progress entry is ''. For an answer a script read and did not write: a master
-- demoted by a failover keeps its clients and answers from its data as it was (until its
-- resync), where the new master may hold otherwise; the write makes such a replica refuse the
-- call (READONLY), which then goes to the new master. On a master it changes nothing and is not
-- replicated (Redis 7; Redis < 7 propagates an empty MULTI/EXEC). No write came before it on a
-- replica: its first write raised.
local function unwritten(cmd, key, reply)
  redis.call(cmd, key, '')
  return reply
end

-- REPLY_MS, ADMIN_REPLY_MS: how long a call's reply key (store/keys.py reply, a token per call)
-- keeps its answer for a re-send of the call (redis-py, after a lost reply; errands' clients
-- re-send within about 90 s: up to 3 re-sends, each after a 15 s socket timeout and a
-- reconnect, store/connection.py). 2 minutes for the calls of the enqueue path (enqueue_dedup,
-- replace_envelope: made often, the keys add up); 10 minutes for the admin calls (cancel,
-- destroy, move, wf_cancel: rare, so room for a client with a longer socket timeout).
local REPLY_MS, ADMIN_REPLY_MS = 120000, 600000

-- MAX_MS: the longest TTL (ms) a script takes: 2^53 (285,000 years), which Lua holds exactly and
-- Redis adds to its clock. A longer one raised after the first write: Lua hands 10^17 to SET PX
-- as '1e+17', which Redis refuses.
local MAX_MS = 2 ^ 53

local function is_priority(x)
  return is_whole(x) and x >= -1000 and x <= 1000
end

-- not_counter(key, outcome): an error reply when INCR on `key` would fail (another type, or a
-- string that is not an integer), else nil: a script that INCRs after its first write asks first
-- not_counter_value(key, v, outcome): the same for `v`, GET's answer of `key` (a string of
-- its type) read before
local function not_counter_value(key, v, outcome)
  if v and not is_int(v) then
    return redis.error_reply('errands: ' .. key .. ' holds ' .. v .. ', not a counter: ' .. outcome)
  end
end

local function not_counter(key, outcome)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then
    return wrong_key(key, outcome)
  end
  return not_counter_value(key, v, outcome)
end

-- is_counter(c): c, a hash field's value as HMGET gives it (false: absent), is one HINCRBY counts
-- on exactly: absent, or a decimal integer within +/-2^53
local function is_counter(c)
  return not c or is_int(c, -2 ^ 53, 2 ^ 53)
end

-- skipped_list(skip, names): the list ending a reply of fetch.lua or reap.lua that left names
-- alone for their `running` count not being a counter: {names[i], skip[i], ...} for each i (in
-- order) with skip[i] set (the first 40 characters of that count)
local function skipped_list(skip, names)
  local list, m = {}, 0
  for i = 1, #names do
    if skip[i] then
      list[m + 1], list[m + 2], m = names[i], skip[i], m + 2
    end
  end
  return list
end

-- not_counters(key, fields, got, outcome): not_hash_counter's error reply for `got`, HMGET's
-- reply of `fields` of hash `key` (a script that reads them anyway), else nil
local function not_counters(key, fields, got, outcome)
  for i = 1, #fields do  -- (a list: no iterator call per field)
    local v, c = fields[i], got[i]
    if not is_counter(c) then
      return redis.error_reply('errands: ' .. key .. ' field ' .. v .. ' holds '
        .. string.sub(c, 1, 40) .. ', not a counter: ' .. outcome)
    end
  end
end

-- not_hash_counter(key, fields, outcome): an error reply when HINCRBY of one of `fields` (a list)
-- of hash `key` would fail (the key of another type, or a field holding anything but a decimal
-- integer within +/-2^53: what HINCRBY reads, with room to count on exactly), else nil; one HMGET:
-- a script that HINCRBYs a field after its first write asks first
local function not_hash_counter(key, fields, outcome)
  if #fields == 0 then
    return nil
  end
  local got = redis.pcall('HMGET', key, unpack(fields))
  if got.err then
    return wrong_key(key, outcome)
  end
  return not_counters(key, fields, got, outcome)
end

-- The namespace's `stats` counters (processed, failed, dead, cancelled, ...) count the work and
-- must never stop it: a field that is not a counter (is_counter: written by hand, a bad restore)
-- is replaced by the call's count instead of refusing the call (its old value, not a number, is
-- lost). A script reads the fields it will count before its first write, as the checks above
-- (no command more), notes the bad ones, and counts with stat_add after it.
-- unfit_stats(fields, got, bad): `bad` (field -> true; created when nil and one is found) with
-- each of `fields` whose value in `got` (HMGET's reply of them) is not a counter, added
local function unfit_stats(fields, got, bad)
  for i = 1, #fields do
    if not is_counter(got[i]) then
      bad = bad or {}
      bad[fields[i]] = true
    end
  end
  return bad
end

-- read_stats(key, fields, outcome, bad): reads `fields` of stats hash `key` (one HMGET, sent with
-- redis.pcall): wrong_key's error reply when `key` holds another type, else nil and
-- unfit_stats' `bad`
local function read_stats(key, fields, outcome, bad)
  local got = redis.pcall('HMGET', key, unpack(fields))
  if got.err then
    return wrong_key(key, outcome)
  end
  return nil, unfit_stats(fields, got, bad)
end

-- stat_add(key, field, delta, bad): HINCRBY `field` of stats hash `key` (its type checked) by
-- `delta`; when bad[field] (read not a counter before the first write), HSET it to `delta`
-- instead (once: the field is a counter from then on, so bad[field] is cleared) and return true.
-- Neither raises.
local function stat_add(key, field, delta, bad)
  if bad and bad[field] then
    bad[field] = nil
    redis.call('HSET', key, field, delta)
    return true
  end
  redis.call('HINCRBY', key, field, delta)
end
