-- lib/edits: a job's count of edits (included by `--@include edits`: destroy, lib/dedup).
-- Client.update_job counts each edit of a job in its envelope's "e" and records it in the
-- job's history as "<id>:e<n>" (n = the count before it + 1, update_job.lua): a script that
-- erases a job's edits reads how many there are here.

-- a count an envelope's field holds: a whole number above 0, else 0
local function whole_count(v)
  v = tonumber(v)
  return (v and v > 0 and v == math.floor(v)) and v or 0
end

-- the edits an envelope counts (Client.update_job's "e"), 0 when it tells none
local function edits_of(env)
  local ok, d = pcall(cjson.decode, env)
  return ok and type(d) == 'table' and whole_count(d.e) or 0
end

-- the counts a waiting job's envelope `env` hands on to an envelope it takes (lib/dedup.lua
-- dedup_replace): its edits ("e", as edits_of) and the attempts it ran (its earlier ones "h",
-- set by a run again by hand, Client.retry_dead_job or reschedule, plus its failures "f",
-- which reschedule keeps): its next run is numbered after them, as after retry_dead_job. 0, 0
-- for an envelope that is no JSON object or counts none
local function counts_of(env)
  local ok, d = pcall(cjson.decode, env)
  if not ok or type(d) ~= 'table' then
    return 0, 0
  end
  return whole_count(d.e), whole_count(d.h) + whole_count(d.f)
end

-- envelope `env` made to count the `e` edits of the job it goes to and, with `h`, the `h`
-- attempts it ran (a waiting job that takes a new envelope keeps its counts: lib/dedup.lua
-- dedup_replace; else its next edit reused the record "<id>:e1" and destroy left it behind,
-- and its next run was numbered 1 again, its record overwriting its first attempt's). A JSON
-- object gets "e":<e> (and "h":<h>) before its closing brace, for a count it has none of, its
-- other bytes kept (decoded and encoded again by cjson, its numbers would lose digits: 14
-- significant); a count of 0 (or past 2^53) is not added; `env` is kept as it is when it is
-- not a JSON object (another serializer's: Client.update_job edits JSON envelopes only), and
-- it keeps its own "e" and "h" (errands' enqueues send none).
local function with_edits(env, e, h)
  h = h or 0
  local add_e, add_h = e > 0 and e <= 2 ^ 53, h > 0 and h <= 2 ^ 53
  if not add_e and not add_h then
    return env
  end
  local ok, d = pcall(cjson.decode, env)
  local close = string.find(env, '}%s*$')
  if not ok or type(d) ~= 'table' or not close or not string.find(env, '^%s*{') then
    return env
  end
  local fields = {}
  if add_e and d.e == nil then
    fields[#fields + 1] = '"e":' .. string.format('%d', e)
  end
  if add_h and d.h == nil then
    fields[#fields + 1] = '"h":' .. string.format('%d', h)
  end
  if #fields == 0 then
    return env
  end
  local sep = next(d) == nil and '' or ','
  return string.sub(env, 1, close - 1) .. sep .. table.concat(fields, ',') .. string.sub(env, close)
end
