-- enqueue: store one or more jobs and put each on its queue, or in its scheduled set when due later.
-- KEYS[1] jobs (HASH id -> envelope)       KEYS[2] priorities (HASH id -> priority)
-- KEYS[3] seq (counter for FIFO order)     KEYS[4] names (SET of job names)
-- KEYS[5] idle (SET of waiting pools)   KEYS[6] listening (events wanted while it exists)
-- KEYS[7..] two per distinct job name: queue (ZSET), scheduled (ZSET)
-- ARGV[1] wake channel   ARGV[2] number of jobs N   ARGV[3] events channel
-- ARGV[4..] six per job: name index (1-based), name, id, envelope, priority, due time in ms (0 = now)
-- Returns the number of jobs stored.
local n = tonumber(ARGV[2])
local seq = redis.call('INCRBY', KEYS[3], n) - n
local ready = 0
local listening = redis.call('EXISTS', KEYS[6]) == 1
for i = 0, n - 1 do
  local o = 3 + i * 6
  local qi = tonumber(ARGV[o + 1])
  local id = ARGV[o + 3]
  local prio = tonumber(ARGV[o + 5])
  local due = tonumber(ARGV[o + 6])
  redis.call('HSET', KEYS[1], id, ARGV[o + 4])
  if prio ~= 0 then
    redis.call('HSET', KEYS[2], id, prio)
  end
  redis.call('SADD', KEYS[4], ARGV[o + 2])
  if due > 0 then
    redis.call('ZADD', KEYS[6 + 2 * qi], due, id)
  else
    seq = seq + 1
    redis.call('ZADD', KEYS[5 + 2 * qi], seq - prio * 4398046511104, id)
    ready = ready + 1
  end
  if listening then
    redis.call('PUBLISH', ARGV[3], '{"event":"enqueued","id":"' .. id .. '","name":"' .. ARGV[o + 2] .. '"}')
  end
end
if ready > 0 and redis.call('SCARD', KEYS[5]) > 0 then
  redis.call('PUBLISH', ARGV[1], 'enqueue')
end
return n
