-- lib/prio: a ready job's score on its queue (included by `--@include prio`, also by the libs
-- that queue jobs: dedup, workflows, longwork). The score is seq - priority * PRIO_STEP, so that
-- the lowest score is the oldest job of the highest priority: priorities (whole, -1000..1000,
-- see types.lua's is_priority) are PRIO_STEP = 2^42 apart, room for 4.4e12 sequence numbers
-- each, and every score stays an integer a double holds exactly (|score| < 2^53).
local PRIO_STEP = 4398046511104

local function queue_score(seq, prio)
  return seq - prio * PRIO_STEP
end
