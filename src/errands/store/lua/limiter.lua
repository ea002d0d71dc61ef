-- limiter: take one start of an in-handler limiter (`pool.limiter(...)`) if its rates allow one
-- now, on the Redis clock (sliding windows, as the rates of job types: lib/limits.lua).
-- KEYS[1] the limiter's rate log (HASH "<per ms>" -> start times; expires a window after its
--         last start)
-- ARGV[1..] two per rate: limit, per ms (malformed: an error, nothing written)
-- Returns 0 when a start was taken, else the ms until a rate lets one start (nothing written).
-- Not idempotent on re-send: a re-sent call that was taken counts twice (errs on the safe side).
--@include limits
--@include types
-- the rates, checked before anything is written; rates with the same window share a log
-- field, so they are merged (the lowest limit holds: lim_spec) and a start is counted once
if #ARGV == 0 or #ARGV % 2 == 1 then
  return redis.error_reply('ERR limiter: two arguments per rate (limit, per ms), got ' .. #ARGV)
end
local terms = {}
for i = 1, #ARGV, 2 do
  terms[#terms + 1] = 'r=' .. ARGV[i] .. '/' .. ARGV[i + 1]
  if not string.match(terms[#terms], '^r=%d+/%d+$') then
    return redis.error_reply('ERR limiter: malformed rate ' .. ARGV[i] .. ' per ' .. ARGV[i + 1])
  end
end
local L, why = lim_spec(table.concat(terms, ';'))
if not L then
  return redis.error_reply('ERR limiter: malformed rates ' .. table.concat(ARGV, ' ', 1,
    math.min(#ARGV, 8)) .. ' (' .. why .. ')')
end
local rates = L.r
local wrong = wrong_type(function()
  return 'HLEN'
end, 'nothing taken')
if wrong then
  return wrong
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
