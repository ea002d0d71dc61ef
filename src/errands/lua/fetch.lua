-- fetch: move up to a batch of ready jobs into a pool's in-progress set, atomically honouring
-- paused job names and max_concurrency across every pool sharing the namespace.
-- KEYS[1] jobs   KEYS[2] running (HASH name -> count)   KEYS[3] in_progress of this pool
-- KEYS[4] paused (SET)   KEYS[5] idle (SET)   KEYS[6] unique (HASH digest -> id)
-- KEYS[7] unique_of_job (HASH id -> digest)   KEYS[8] unique_expiry (ZSET)   KEYS[9] listening
-- KEYS[10..] the queue of each job name, in the order to try them
-- ARGV[1] pool id   ARGV[2] now ms   ARGV[3] batch size   ARGV[4] events channel
-- ARGV[5..] two per queue: job name, max_concurrency (0 = no limit)
-- Returns a flat array: queue index (1-based), job id, envelope, ... ; marks the pool idle when empty.
local out = {}
local want = tonumber(ARGV[3])
local nq = #KEYS - 9
local listening = redis.call('EXISTS', KEYS[9]) == 1
for i = 1, nq do
  if want <= 0 then break end
  local name = ARGV[3 + 2 * i]
  local limit = tonumber(ARGV[4 + 2 * i])
  if redis.call('SISMEMBER', KEYS[4], name) == 0 then
    local take = want
    if limit > 0 then
      take = math.min(take, limit - tonumber(redis.call('HGET', KEYS[2], name) or '0'))
    end
    if take > 0 then
      local popped = redis.call('ZPOPMIN', KEYS[9 + i], take)
      local got = 0
      for j = 1, #popped, 2 do
        local id = popped[j]
        local envelope = redis.call('HGET', KEYS[1], id)
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
      if got > 0 then
        redis.call('HINCRBY', KEYS[2], name, got)
        want = want - got
      end
    end
  end
end
if #out == 0 then
  redis.call('SADD', KEYS[5], ARGV[1])
else
  redis.call('SREM', KEYS[5], ARGV[1])
end
return out
