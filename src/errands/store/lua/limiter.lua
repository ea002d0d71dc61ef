-- limiter: take one start of an in-handler limiter (`pool.limiter(...)`) if its rates allow one
-- now, on the Redis clock (sliding windows, as the rates of job types: lib/limits.lua).
-- KEYS[1] the limiter's rate log (HASH "<per ms>" -> start times; expires a window after its
--         last start)
-- ARGV[1..] two per rate: limit, per ms (malformed: an error, nothing written)
-- Returns 0 when a start was taken, else the ms until a rate lets one start (nothing written).
-- Not idempotent on re-send: a re-sent call that was taken counts twice (errs on the safe side).
--@include limits
-- the rates, checked before anything is written; rates with the same window share a log
-- field, so they are merged (the lowest limit holds) and a start is counted once
local rates, byper = {}, {}
if #ARGV == 0 or #ARGV % 2 == 1 then
  return redis.error_reply('ERR limiter: two arguments per rate (limit, per ms), got ' .. #ARGV)
end
for i = 1, #ARGV, 2 do
  local n, per = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if not n or not per or n < 1 or per < 1 or n % 1 ~= 0 or per % 1 ~= 0 then
    return redis.error_reply('ERR limiter: malformed rate ' .. ARGV[i] .. ' per ' .. ARGV[i + 1])
  end
  if byper[per] then
    byper[per][1] = math.min(byper[per][1], n)
  else
    byper[per] = {n, per}
    table.insert(rates, byper[per])
  end
end
local pcheck = redis.pcall('HLEN', KEYS[1])
if type(pcheck) == 'table' and pcheck.err then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is not a hash: nothing taken')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = {prate = KEYS[1]}
local free, longest = 0, 0
for _, r in ipairs(rates) do
  local room, f = lim_room(KEYS[1], tostring(r[2]), r[1], r[2], now)
  if room == 0 and f > free then
    free = f
  end
  longest = math.max(longest, r[2])
end
if free > 0 then
  return math.max(1, free - now)
end
for _, r in ipairs(rates) do
  lim_started(P, tostring(r[2]), r[1], r[2], now, 1)
end
if redis.call('PTTL', KEYS[1]) < longest + 1000 then
  redis.call('PEXPIRE', KEYS[1], longest + 1000)
end
return 0
