-- lib/types: the type check a script makes before its first write (included by `--@include
-- types`), so that a key of another type fails the whole call cleanly instead of raising half-way.
-- wrong_type(cmd_of, outcome): cmd_of(j) is the read command KEYS[j] must accept (HLEN, GET,
-- SCARD, ZCARD, ...; false or nil: any type); each is sent with redis.pcall. Returns the error
-- reply naming the first key of another type and saying `outcome` ('no job was stored', ...),
-- or nil when every key fits.
local function wrong_type(cmd_of, outcome)
  for j = 1, #KEYS do
    local cmd = cmd_of(j)
    if cmd then
      local checked = redis.pcall(cmd, KEYS[j])
      if type(checked) == 'table' and checked.err then
        return redis.error_reply('WRONGTYPE ' .. KEYS[j] .. ' holds another type: ' .. outcome)
      end
    end
  end
end
