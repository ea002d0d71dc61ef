-- enqueue: store one or more jobs and put each on its queue, or in its scheduled set when due later.
-- Idempotent on the job id: a job whose id is stored (waiting, running, dead, cancelled) or
-- ended recently (its tombstone or its result record exists) is not stored again, so a re-sent
-- call (redis-py retries after a timeout) or a repeated job id adds nothing and counts nothing.
-- KEYS[1] jobs (HASH id -> envelope)       KEYS[2] priorities (HASH id -> priority)
-- KEYS[3] seq (counter for FIFO order)     KEYS[4] names (SET of job names)
-- KEYS[5] idle (SET of waiting pools)   KEYS[6] listening (events wanted while it exists)
-- KEYS[7] ended (tombstones)   KEYS[8] partitions (HASH id -> partition)
-- KEYS[9 .. 8+4M] four per distinct job name: queue (ZSET), scheduled (ZSET), partition queue,
--                 partitions ready (see lib/limits.lua)
-- KEYS[9+4M .. 8+4M+N] the result-record key of each job
-- ARGV[1] wake channel   ARGV[2] number of jobs N   ARGV[3] events channel   ARGV[4] M names
-- ARGV[5..] seven per job: name index (1-based), name, id, envelope, priority, due time in ms
--           (0 = now), partition ('' = none)
-- Returns the (1-based) indices of the jobs found already there (another job with the id is
-- stored, or the id's job ended recently); a job stored with this very envelope (this call's own
-- earlier send) is not stored again either, but not listed.
-- A queue or scheduled key holding another type fails the whole call before its first write
-- (a script must not fail half-way), so a caller can re-send the other jobs alone.
--@include limits
local n = tonumber(ARGV[2])
local base = 8 + 4 * tonumber(ARGV[4])
for j = 9, base do
  local checked = redis.pcall('ZCARD', KEYS[j])  -- (ZCARD: in the documented ACL rule; TYPE is not)
  if type(checked) == 'table' and checked.err then
    return redis.error_reply('WRONGTYPE ' .. KEYS[j] .. ' is not a sorted set: no job of this call was stored')
  end
end
local k = {jobs = KEYS[1], ended = KEYS[7]}
local seq = redis.call('INCRBY', KEYS[3], n) - n
local ready = 0
local existed = {}
local listening = redis.call('EXISTS', KEYS[6]) == 1
for i = 0, n - 1 do
  local o = 4 + i * 7
  local qi = tonumber(ARGV[o + 1])
  local id = ARGV[o + 3]
  local prio = tonumber(ARGV[o + 5])
  local due = tonumber(ARGV[o + 6])
  local stored = redis.call('HGET', k.jobs, id)
  if stored then
    if stored ~= ARGV[o + 4] then
      existed[#existed + 1] = i + 1
    end
  elseif redis.call('ZSCORE', k.ended, id) or redis.call('EXISTS', KEYS[base + 1 + i]) == 1 then
    existed[#existed + 1] = i + 1
  else
    redis.call('HSET', KEYS[1], id, ARGV[o + 4])
    if prio ~= 0 then
      redis.call('HSET', KEYS[2], id, prio)
    end
    redis.call('SADD', KEYS[4], ARGV[o + 2])
    local partition = ARGV[o + 7]
    if partition ~= '' then
      redis.call('HSET', KEYS[8], id, partition)
    end
    local b = 4 + 4 * qi
    if due > 0 then
      redis.call('ZADD', KEYS[b + 2], due, id)
    else
      seq = seq + 1
      redis.call('ZADD', KEYS[b + 1], seq - prio * 4398046511104, id)
      if partition ~= '' then
        local P = {part = KEYS[8], seq = KEYS[3], pq = KEYS[b + 3], pready = KEYS[b + 4]}
        lim_queued(P, id, seq - prio * 4398046511104, partition)
      end
      ready = ready + 1
    end
    if listening then
      redis.call('PUBLISH', ARGV[3], '{"event":"enqueued","id":"' .. id .. '","name":"' .. ARGV[o + 2] .. '"}')
    end
  end
end
if ready > 0 and redis.call('SCARD', KEYS[5]) > 0 then
  redis.call('PUBLISH', ARGV[1], 'enqueue')
end
return existed
