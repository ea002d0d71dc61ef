-- snapshot (tests only: tests/support/invariants/layout.py): every key of a namespace, with its
-- type, TTL and value, listed and read in one step. A script runs alone: nothing is created,
-- moved or deleted between the listing and the reads (a SCAN then a MULTI left a window there,
-- in which a job moving into a key the SCAN had not seen was in no place). Reads only.
-- KEYS[1] a key of the namespace (routes the call; the namespace's keys share its hash tag)
-- ARGV[1] the glob of the namespace's keys (for KEYS)
-- ARGV[2..] prefixes of keys whose value is not read (their type and TTL are)
-- Returns {seconds, microseconds (TIME), then four per key: key, type, PTTL, value}; the value
-- of a hash, zset (with scores) or set is its flat list, of a string the string, of a list its
-- length; false when not read.
local t = redis.call('TIME')
local out = {t[1], t[2]}
local skip = {}
for i = 2, #ARGV do
  skip[#skip + 1] = ARGV[i]
end

local function skipped(key)
  for _, prefix in ipairs(skip) do
    if string.sub(key, 1, #prefix) == prefix then
      return true
    end
  end
  return false
end

local READ = {
  hash = function(key) return redis.call('HGETALL', key) end,
  zset = function(key) return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES') end,
  set = function(key) return redis.call('SMEMBERS', key) end,
  string = function(key) return redis.call('GET', key) end,
  list = function(key) return redis.call('LLEN', key) end,
}

for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local kind = redis.call('TYPE', key)['ok']
  local read = READ[kind]
  local n = #out
  out[n + 1], out[n + 2], out[n + 3] = key, kind, redis.call('PTTL', key)
  out[n + 4] = (read and not skipped(key)) and read(key) or false
end
return out
