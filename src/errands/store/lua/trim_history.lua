-- trim_history: drop attempt records from the history: the oldest past its age or length bound,
-- chosen by the caller (Scripts.trim_history reads them first, to name their result records).
-- A result record that names a dropped attempt (ack.lua writes it so while the history holds
-- the same record) gets the record first, with the TTL it has left.
-- KEYS[1] history (ZSET "id:attempt" -> ms)   KEYS[2] history_data (HASH)
-- KEYS[3 .. 2+N] the result-record key of each member's job
-- KEYS[3+N ..] the history-of-name ZSET of each known job name
-- ARGV[1] N members   ARGV[2 .. 1+N] the members
-- Returns N. A member that is not in the history (dropped meanwhile) is skipped: a re-sent call
-- changes nothing and gives the same answer.
local n = tonumber(ARGV[1])
local old = {}
for i = 1, n do
  local m = ARGV[1 + i]
  if redis.call('ZSCORE', KEYS[1], m) then
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
end
if #old == 0 then
  return n
end
for i = 1, #old, 500 do
  local chunk = {unpack(old, i, math.min(i + 499, #old))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('HDEL', KEYS[2], unpack(chunk))
  -- exactly these from the per-name indexes too: records ending in the same millisecond as
  -- the oldest kept one would survive a trim by score alone
  for k = 3 + n, #KEYS do
    redis.call('ZREM', KEYS[k], unpack(chunk))
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local cutoff = head[2] or '+inf'
for k = 3 + n, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. cutoff)
end
return n
