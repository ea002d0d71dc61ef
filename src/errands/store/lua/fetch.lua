-- fetch: move up to a batch of ready jobs into a pool's in-progress set, atomically honouring
-- paused job names and max_concurrency across every pool sharing the namespace.
-- KEYS[1] jobs   KEYS[2] running (HASH name -> count)   KEYS[3] in_progress of this pool
-- KEYS[4] paused (SET)   KEYS[5] idle (SET)   KEYS[6] unique (HASH digest -> id)
-- KEYS[7] unique_of_job (HASH id -> digest)   KEYS[8] unique_expiry (ZSET)   KEYS[9] listening
-- KEYS[10] recoveries (HASH id -> times taken back from dead pools)
-- KEYS[11..] the queue of each job name, in the order to try them
-- ARGV[1] pool id   ARGV[2] now ms   ARGV[3] batch size   ARGV[4] events channel
-- ARGV[5] isolation threshold (0 = off): a job taken back from dead pools this many times is a
--         suspect, and a pool runs at most one suspect at a time. The job that kills its worker
--         then no longer takes the same neighbours down with it each time, so they do not end
--         up buried as poison with it.
-- ARGV[6..] two per queue: job name, max_concurrency (0 = no limit)
-- Returns a flat array: queue index (1-based), job id, envelope, ... ; marks the pool idle when it got fewer jobs than asked for.
local out = {}
local want = tonumber(ARGV[3])
local nq = #KEYS - 10
local listening = redis.call('EXISTS', KEYS[9]) == 1
local isolate = tonumber(ARGV[5])
local suspects = 0
if isolate > 0 and redis.call('HLEN', KEYS[10]) > 0 then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local held = string.match(member, '^([^:]*):')
    if held and tonumber(redis.call('HGET', KEYS[10], held) or '0') >= isolate then
      suspects = suspects + 1
    end
  end
else
  isolate = 0
end
for i = 1, nq do
  if want <= 0 then break end
  local name = ARGV[4 + 2 * i]
  local limit = tonumber(ARGV[5 + 2 * i])
  if redis.call('SISMEMBER', KEYS[4], name) == 0 then
    local take = want
    if limit > 0 then
      take = math.min(take, limit - tonumber(redis.call('HGET', KEYS[2], name) or '0'))
    end
    if take > 0 then
      local got = 0
      local skipped = {}  -- suspects this pool may not take now: back in line when done
      while got < take do
        local popped = redis.call('ZPOPMIN', KEYS[10 + i], take - got)
        if #popped == 0 then break end
        for j = 1, #popped, 2 do
          local id = popped[j]
          local envelope = redis.call('HGET', KEYS[1], id)
          if envelope and isolate > 0
              and tonumber(redis.call('HGET', KEYS[10], id) or '0') >= isolate then
            if suspects > 0 then
              skipped[#skipped + 1] = popped[j + 1]
              skipped[#skipped + 1] = id
              envelope = false
            else
              suspects = 1
            end
          end
          if envelope then
            redis.call('ZADD', KEYS[3], ARGV[2], id .. ':' .. name)
            got = got + 1
            out[#out + 1] = i
            out[#out + 1] = id
            out[#out + 1] = envelope
            if listening then
              redis.call('PUBLISH', ARGV[4], '{"event":"started","id":"' .. id .. '","name":"' .. name .. '"}')
            end
            local digest = redis.call('HGET', KEYS[7], id)
            if digest then
              if redis.call('HGET', KEYS[6], digest) == id then
                redis.call('HDEL', KEYS[6], digest)
                redis.call('ZREM', KEYS[8], digest)
              end
              redis.call('HDEL', KEYS[7], id)
            end
          end
        end
      end
      if #skipped > 0 then
        redis.call('ZADD', KEYS[10 + i], unpack(skipped))
      end
      if got > 0 then
        redis.call('HINCRBY', KEYS[2], name, got)
        want = want - got
      end
    end
  end
end
if want > 0 then
  -- fewer jobs than asked for: the queues are drained (or capped, or paused), so the pool waits
  -- for a wake-up instead of asking again at once
  redis.call('SADD', KEYS[5], ARGV[1])
else
  redis.call('SREM', KEYS[5], ARGV[1])
end
return out
