-- lib/chunked: one command over many members, 1,000 at a time (included by `--@include
-- chunked`): unpack() of more than ~8,000 values raises "too many results to unpack", which a
-- script must not do after its first write (a fetch of a batch of 10,000 jobs drops as many
-- queue entries).
local CHUNK = 1000

-- redis.call(cmd, key, items[c], ..., items[e]) for each chunk of `items`; nothing when empty
local function call_chunked(cmd, key, items)
  for c = 1, #items, CHUNK do
    redis.call(cmd, key, unpack(items, c, math.min(c + CHUNK - 1, #items)))
  end
end
