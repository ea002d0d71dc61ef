-- trim_history: bound the attempt history by age and by length.
-- KEYS[1] history (ZSET "id:attempt" -> ms)   KEYS[2] history_data (HASH)
-- KEYS[3..] the history-of-name ZSET of each known job name
-- ARGV[1] drop records older than this ms   ARGV[2] most records to keep
-- ARGV[3] most records to drop in one call
-- Returns the number of records dropped.
local limit = tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
local excess = redis.call('ZCARD', KEYS[1]) - #old - tonumber(ARGV[2])
if excess > 0 then
  local more = redis.call('ZRANGE', KEYS[1], #old, #old + math.min(excess, limit) - 1)
  for _, m in ipairs(more) do
    old[#old + 1] = m
  end
end
if #old == 0 then
  return 0
end
for i = 1, #old, 500 do
  local chunk = {unpack(old, i, math.min(i + 499, #old))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('HDEL', KEYS[2], unpack(chunk))
  -- exactly these from the per-name indexes too: records ending in the same millisecond as
  -- the oldest kept one would survive a trim by score alone
  for k = 3, #KEYS do
    redis.call('ZREM', KEYS[k], unpack(chunk))
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local cutoff = head[2] or '+inf'
for k = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. cutoff)
end
return #old
