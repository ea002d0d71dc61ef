-- lib/chunked: one command over many members, 1,000 at a time (included by `--@include
-- chunked`): unpack() of more than ~8,000 values raises "too many results to unpack", which a
-- script must not do after its first write (a fetch of a batch of 10,000 jobs drops as many
-- queue entries).
local CHUNK = 1000

-- redis.call(cmd, key, items[c], ..., items[e]) for each chunk of `items`; nothing when empty
-- (flat pairs, field/value or score/member, stay whole: a chunk is an even count)
local function call_chunked(cmd, key, items)
  for c = 1, #items, CHUNK do
    redis.call(cmd, key, unpack(items, c, math.min(c + CHUNK - 1, #items)))
  end
end

-- the first n of `items`, a new list (a loop, not unpack(): n may pass unpack's limit)
local function leading(items, n)
  local out = {}
  for i = 1, n do
    out[i] = items[i]
  end
  return out
end

-- the replies of a read command over many members (HMGET, ...), 1,000 at a time, in one list
-- (an absent member's reply is false, as redis.call gives it); up to 1,000 the reply itself
local function read_chunked(cmd, key, items)
  local n = #items
  if n > 0 and n <= CHUNK then
    return redis.call(cmd, key, unpack(items, 1, n))
  end
  local out = {}
  for c = 1, #items, CHUNK do
    local got = redis.call(cmd, key, unpack(items, c, math.min(c + CHUNK - 1, #items)))
    for i = 1, #got do
      out[c + i - 1] = got[i]
    end
  end
  return out
end

-- the scores of `items` in the sorted set `key` (false: not a member), in one list: one ZMSCORE
-- per 1,000, sent with redis.pcall. An ACL rule of an older errands (or Redis < 6.2) refuses
-- ZMSCORE: an error reply, not a raise, so a script may ask after its first write; then each is
-- read with its own ZSCORE, and the rest of the call does not ask again (one refusal per call)
local zmscore_refused = false  --@percall (store/fnlib.py: made anew by each call of a library)
local function read_zmscore(key, items)
  local n = #items
  if n > 0 and n <= CHUNK and not zmscore_refused then  -- (one chunk: the reply itself)
    local got = redis.pcall('ZMSCORE', key, unpack(items, 1, n))
    if not got.err then
      return got
    end
    zmscore_refused = true
  end
  local out = {}
  for c = 1, #items, CHUNK do
    local e = math.min(c + CHUNK - 1, #items)
    local got = not zmscore_refused and redis.pcall('ZMSCORE', key, unpack(items, c, e))
    if got and got.err then
      zmscore_refused, got = true, false
    end
    for i = c, e do
      if got then
        out[i] = got[i - c + 1]
      else
        out[i] = redis.call('ZSCORE', key, items[i])
      end
    end
  end
  return out
end

-- whether each of `items` is a member of the sorted set `key` of `card` members (its ZCARD): either
-- as read_zmscore answers it (the item's place -> truthy when it is), then false, false; or false,
-- then item -> true when it is (a falsy value when not), then the items that are in the set's
-- order, when the set was read whole: with one ZRANGE while it holds at most twice as many members
-- as `items` (at most 2,000 a call of ack.lua). `items` may repeat an item only when `distinct` is
-- false (ack.lua's entries "<id>:<name>" of distinct ids repeat when a name holds ':'). A small set
-- is a listpack, which each ZMSCORE lookup scans, as each ZREM does up to the member it removes
-- (removed in the set's order, each is the first of those left). While the set holds as many
-- members as there are items and they are distinct (a pool's set holds the batch it acknowledges),
-- the marks are made from its members and the third value is the ZRANGE reply itself (no list
-- made): it is the items in the set's order when each item is a member, which is the only case a
-- caller reads it in (when one is not, a member is not an item).
local function read_held(key, items, card, distinct)
  local n = #items
  if n == 0 or card > 2 * n then
    return read_zmscore(key, items), false, false
  end
  local members = redis.call('ZRANGE', key, 0, -1)
  local mark, m = {}, #members
  if m == n and distinct then
    for x = 1, m do
      mark[members[x]] = true
    end
    return false, mark, members
  end
  local in_order = {}
  for i = 1, n do
    mark[items[i]] = false
  end
  for x = 1, m do
    local member = members[x]
    if mark[member] == false then
      mark[member] = true
      in_order[#in_order + 1] = member
    end
  end
  return false, mark, in_order
end
