-- limiter: take one start of an in-handler limiter (`pool.limiter(...)`) if its rates allow one
-- now, on the Redis clock (sliding windows, as the rates of job types: lib/limits.lua).
-- KEYS[1] the limiter's rate log (HASH "<per ms>" -> start times; expires a window after its
--         last start)
-- ARGV[1..] two per rate: limit, per ms
-- Returns 0 when a start was taken, else the ms until a rate lets one start (nothing written).
-- Not idempotent on re-send: a re-sent call that was taken counts twice (errs on the safe side).
--@include limits
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = {prate = KEYS[1]}
local free, longest = 0, 0
for i = 1, #ARGV, 2 do
  local n, per = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local room, f = lim_room(KEYS[1], tostring(per), n, per, now)
  if room == 0 and f > free then
    free = f
  end
  longest = math.max(longest, per)
end
if free > 0 then
  return math.max(1, free - now)
end
for i = 1, #ARGV, 2 do
  local n, per = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  lim_started(P, tostring(per), n, per, now, 1)
end
if redis.call('PTTL', KEYS[1]) < longest + 1000 then
  redis.call('PEXPIRE', KEYS[1], longest + 1000)
end
return 0
