-- lib/limreadmit: the partitions a job name's limits held back under other limits get their
-- turn again (included by `--@include limreadmit` after limits and chunked, by fetch.lua).
-- A partition leaves the turns while its concurrency is full (busy: until one of its jobs
-- ends, lim_release) or its rate (waiting in pwait until the time its rate computed): both
-- decided under the limits of the fetch that met it. Limits loosened since (Client.set_limits,
-- a deploy) held such a partition back until its running job ended, or its old window freed.

-- the per-partition terms of limits L (lib/limits.lua's lim_spec), spelt as a spec: '' none
local function lim_part_spec(L)
  local terms = {}
  if L.pc > 0 then
    terms[1] = 'c=' .. L.pc
  end
  for _, r in ipairs(L.R) do
    terms[#terms + 1] = 'R=' .. r[1] .. '/' .. r[2]
  end
  return table.concat(terms, ';')
end

-- job name P.name fetched under limits L: while the per-partition limits it was last fetched
-- under (got: key's field "<name>\0limits" as the caller read it, key: pscan; false: none)
-- are others, its held-back partitions are given turns, a bounded step per call: the waiting
-- ones (ZSCAN of pwait: out of it, into the turns), then the busy ones (HSCAN of prun: those
-- with a job indexed and neither a turn nor a wait), the field saying "<spec>\0<w|r><cursor>"
-- until done, then "<spec>" (the field goes when that is none: a name without per-partition
-- limits leaves nothing). A partition the limits still hold back is met by the next serve and
-- held back again. True when a partition got a turn (the caller's P.known, read before, is
-- stale then). No command when the limits are the same.
local LIM_READMIT = 64  -- entries asked of each scan per call
local function lim_readmit(P, L, key, got)
  local field, spec = P.name .. '\0limits', lim_part_spec(L)
  if got == spec or not got and spec == '' then
    return false
  end
  local phase, cursor = 'w', '0'
  local of, ph, at = string.match(got or '', '^(.*)%z([wr])(%d+)$')
  if of == spec and #at <= 19 then  -- (a cursor SCAN reads: below 2^64, written by hand else)
    phase, cursor = ph, at
  end
  local turned = false
  if phase == 'w' then
    local r = redis.call('ZSCAN', P.pwait, cursor, 'COUNT', LIM_READMIT)
    local ps = {}
    for j = 1, #r[2], 2 do
      ps[#ps + 1] = r[2][j]
    end
    call_chunked('ZREM', P.pwait, ps)
    for _, p in ipairs(ps) do
      lim_ready(P, p)
      turned = true
    end
    phase, cursor = r[1] == '0' and 'r' or 'w', r[1]
  end
  if phase == 'r' then
    local r = redis.call('HSCAN', P.prun, cursor, 'COUNT', LIM_READMIT)
    for j = 1, #r[2], 2 do
      local p = r[2][j]
      if not redis.call('ZSCORE', P.pready, p) and not redis.call('ZSCORE', P.pwait, p)
          and lim_head(P.pq, p) then
        lim_ready(P, p)
        turned = true
      end
    end
    cursor = r[1]
  end
  if phase == 'r' and cursor == '0' and spec == '' then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, (phase == 'r' and cursor == '0') and spec
      or (spec .. '\0' .. phase .. cursor))
  end
  return turned
end
