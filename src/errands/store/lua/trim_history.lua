-- trim_history: drop attempt records from the history: the oldest past its age or length bound,
-- chosen by the caller (worker/requeuer.trim_history reads them first, to name their result
-- records). A result record that names a dropped attempt (ack.lua writes it so while the
-- history holds the same record) gets the record first, with the TTL it has left.
-- KEYS[1] history (the global index of versions before issue 15, drained here)
-- KEYS[2] history_data (HASH)   KEYS[3 .. 2+N] the result-record key of each member's job
-- KEYS[3+N ..] the history-of-name ZSET of each known job name (the index)
-- ARGV[1] N members   ARGV[2 .. 1+N] the members ("<id>:<attempt>")
-- Returns N. A re-sent call finds its members gone (and the records moved already): it changes
-- nothing and gives the same answer. A count that does not fit the members and keys given, or
-- a key of another type (the result records aside: read with pcall, SET over any type), fails
-- the call before its first write.
--@include types
local n = tonumber(ARGV[1])
if not (is_whole(n) and n >= 0 and #ARGV == 1 + n and #KEYS >= 2 + n) then
  return redis.error_reply('errands: trim_history: ' .. tostring(ARGV[1]) .. ' members do not fit '
    .. (#ARGV - 1) .. ' members and ' .. #KEYS .. ' keys: nothing trimmed')
end
local wrong = wrong_type(function(j)
  if j == 2 then
    return 'HLEN'
  end
  return (j == 1 or j > 2 + n) and 'ZCARD'
end, 'nothing trimmed')
if wrong then
  return wrong
end
local old = {}
for i = 1, n do
  local m = ARGV[1 + i]
  local attempt = string.match(m, ':(%d+)$')
  if attempt and redis.pcall('GET', KEYS[2 + i]) == attempt then
    local record = redis.call('HGET', KEYS[2], m)
    local ttl = redis.call('PTTL', KEYS[2 + i])
    if record and ttl > 0 then
      redis.call('SET', KEYS[2 + i], record, 'PX', ttl)
    end
  end
  old[#old + 1] = m
end
for i = 1, #old, 500 do
  local chunk = {unpack(old, i, math.min(i + 499, #old))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('HDEL', KEYS[2], unpack(chunk))
  for k = 3 + n, #KEYS do
    redis.call('ZREM', KEYS[k], unpack(chunk))
  end
end
return n
