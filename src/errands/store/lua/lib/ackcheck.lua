-- lib/ackcheck: ack.lua's checks before its first write (included by `--@include ackcheck`
-- after types): its arguments, with ack.lua's KEYS and ARGV (see its header).

-- ack_args(n, names): nil, then qis (job j -> its name index, j from 0), ids (1-based), the
-- distinct names in order and ttl_of (TTL string -> its number) when every job's name index is
-- within 1..names and its TTL (0..MAX_MS), start and attempt are spelt as Redis reads an integer
-- (lib/types.lua is_int), else the error reply naming the first bad job. Each distinct string is
-- checked once (a call's jobs share their name index, TTL and attempt mostly): qi_of, string ->
-- its name index or false; ttl_of, string -> the TTL or false; int_ok, string -> is_int's verdict
local function ack_args(n, names)
  local qis, ids, name_list, ttl_of = {}, {}, {}, {}
  local qi_of, int_ok, named = {}, {}, {}
  for j = 0, n - 1 do
    local o = 8 + j * 10
    local s, ttl, start, attempt = ARGV[o + 2], ARGV[o + 5], ARGV[o + 4], ARGV[o + 6]
    local qi = qi_of[s]
    if qi == nil then
      qi = tonumber(s)
      qi = is_whole(qi) and qi >= 1 and qi <= names and qi
      qi_of[s] = qi
    end
    if ttl_of[ttl] == nil then
      ttl_of[ttl] = is_int(ttl, 0, MAX_MS) and tonumber(ttl)
    end
    if int_ok[start] == nil then
      int_ok[start] = is_int(start)
    end
    if int_ok[attempt] == nil then
      int_ok[attempt] = is_int(attempt)
    end
    if not (qi and ttl_of[ttl] and int_ok[start] and int_ok[attempt]) then
      return redis.error_reply('errands: ack: job ' .. ARGV[o] .. ': bad name index, start, '
        .. 'result TTL or attempt (' .. ARGV[o + 2] .. ', ' .. ARGV[o + 4] .. ', ' .. ARGV[o + 5]
        .. ', ' .. ARGV[o + 6] .. '): nothing acknowledged')
    end
    qis[j], ids[j + 1] = qi, ARGV[o]
    local name = ARGV[o + 1]
    if not named[name] then
      named[name] = true
      name_list[#name_list + 1] = name
    end
  end
  return nil, qis, ids, name_list, ttl_of
end
