-- trim_set: bound a set of ended jobs (dead or cancelled) by age and size, forgetting the jobs
-- with every field of theirs (a tombstone remains, see lib/jobstate.lua). At most 1,000 by age plus
-- 1,000 by size per call.
-- KEYS[1] the set (ZSET id -> ms)   KEYS[2] jobs   KEYS[3] priorities   KEYS[4] errors
-- KEYS[5] recoveries   KEYS[6] checkins   KEYS[7] cancel requests   KEYS[8] attempts
-- KEYS[9] unique_of_job   KEYS[10] unique   KEYS[11] unique_expiry   KEYS[12] ended
-- KEYS[13] checkpoints   KEYS[14] listening   KEYS[15] partitions
-- KEYS[16] workflow_of (optional: absent, the call of an older version, no member looked at)
-- ARGV[1] drop entries older than this ms   ARGV[2] most entries to keep   ARGV[3] events channel
-- Each trimmed job is published (`deleted`, reason `trimmed`) while someone listens. A workflow
-- member parked in the dead set without ending ends as failed, its run settled (lib/settrim.lua);
-- one whose run has a key of another type is left in the set (not counted against the 1,000 by
-- age: paged past, 2,000 read at most). The size bound never trims one of the newest ARGV[2]
-- entries: kept ones older than those stay over it, not made room for.
-- Returns the number of jobs deleted. A key of another type fails the call before its first
-- write (it took the jobs out of the set, then raised forgetting them: envelopes left behind
-- in no set). Sent again, it trims what is left to trim (an entry trimmed is gone: its member's
-- end is not handled twice).
--@include settrim
--@include types
local LIMIT = 1000
local TYPES = {'ZCARD', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN', 'HLEN',
  'ZCARD', 'ZCARD', 'HLEN', false, 'HLEN', 'HLEN'}  -- (listening: read with EXISTS/pcall)
local wrong = wrong_type(function(j) return TYPES[j] end, 'nothing trimmed')
if wrong then
  return wrong
end
local k = {jobs = KEYS[2], prio = KEYS[3], errors = KEYS[4], recov = KEYS[5], checkin = KEYS[6],
  cancelreq = KEYS[7], att = KEYS[8], uniqjob = KEYS[9], uniq = KEYS[10], uniqexp = KEYS[11],
  ended = KEYS[12], ckpt = KEYS[13], part = KEYS[15]}
local stale, ends = set_trim_pick(KEYS[1], ARGV[1], ARGV[2], LIMIT, KEYS[16])
return set_trim(k, KEYS[1], stale, ends, KEYS[16], KEYS[14], ARGV[3])
