-- lib/prio: a ready job's score on its queue (included by `--@include prio`, also by the libs
-- that queue jobs: dedup, workflows, longwork). The score is seq - priority * PRIO_STEP, so that
-- the lowest score is the oldest job of the highest priority: priorities (whole, -1000..1000,
-- see types.lua's is_priority) are PRIO_STEP = 2^42 apart, room for 4.4e12 sequence numbers
-- each, and every score stays an integer a double holds exactly (|score| < 2^53).
local PRIO_STEP = 4398046511104

local function queue_score(seq, prio)
  return seq - prio * PRIO_STEP
end

-- the priority `raw` (HGET of the priorities HASH: a string, or false when none) queues a job
-- at: 0 when none, and 0 too when what is stored is not a whole number in -1000..1000 (data
-- written by hand or by a bug): read after a script's first write, a nan priority raised in
-- ZADD half-way (and stopped every promote: the bad job stayed due); such a job now runs at
-- the default priority.
local function prio_of(raw)
  local p = tonumber(raw or '0')
  if p and p == math.floor(p) and p - p == 0 and p >= -1000 and p <= 1000 then
    return p
  end
  return 0
end
