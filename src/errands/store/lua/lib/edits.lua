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
