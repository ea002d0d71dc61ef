-- lib/edits: a job's count of edits (included by `--@include edits`: destroy, lib/dedup).
-- Client.update_job counts each edit of a job in its envelope's "e" and records it in the
-- job's history as "<id>:e<n>" (n = the count before it + 1, update_job.lua): a script that
-- erases a job's edits reads how many there are here.

-- the edits an envelope counts (Client.update_job's "e"), 0 when it tells none
local function edits_of(env)
  local ok, d = pcall(cjson.decode, env)
  local e = ok and type(d) == 'table' and tonumber(d.e)
  return (e and e > 0 and e == math.floor(e)) and e or 0
end

-- envelope `env` made to count the `e` edits of the job it goes to (a waiting job that takes a
-- new envelope keeps its count: lib/dedup.lua dedup_replace; else its next edit reused the
-- record "<id>:e1" and destroy left it behind). A JSON object with no "e" of its own gets
-- "e":<e> before its closing brace, its other bytes kept (decoded and encoded again by cjson,
-- its numbers would lose digits: 14 significant); `env` is kept as it is when `e` is 0 (or
-- past 2^53), when it is not a JSON object (another serializer's: Client.update_job edits JSON
-- envelopes only) and when it has an "e" (errands' enqueues send none).
local function with_edits(env, e)
  if e == 0 or e > 2 ^ 53 then
    return env
  end
  local ok, d = pcall(cjson.decode, env)
  local close = string.find(env, '}%s*$')
  if not ok or type(d) ~= 'table' or d.e ~= nil or not close or not string.find(env, '^%s*{') then
    return env
  end
  local sep = next(d) == nil and '' or ','
  return string.sub(env, 1, close - 1) .. sep .. '"e":' .. string.format('%d', e)
    .. string.sub(env, close)
end
