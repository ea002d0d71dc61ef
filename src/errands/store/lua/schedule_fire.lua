-- schedule_fire: handle one fire time (slot) of a periodic schedule, at most once across every
-- pool: a compare-and-set on the schedule's last slot, and the enqueue in the same script (the
-- job is stored exactly as enqueue.lua stores a ready job).
-- KEYS[1] state of the schedule (HASH)   KEYS[2] jobs   KEYS[3] priorities   KEYS[4] seq
-- KEYS[5] names   KEYS[6] idle   KEYS[7] listening   KEYS[8] queue of the job name
-- KEYS[9] dead   KEYS[10] cancelled   KEYS[11] definitions of its kind (runtime or code HASH)
-- KEYS[12] dedup   KEYS[13] dedup_of_job   KEYS[14] the throttle window of its dedup key
-- KEYS[15] ended (tombstones)   KEYS[16] the result-record key of the job id ARGV[7]
-- KEYS[17] the idle pools of the job name (lib/wake.lua): the job fired wakes one of them
--          (without it: every idle pool)
-- KEYS[18] mode manual: the reply key of the run (store/keys.py reply of the job id ARGV[7];
--          optional): its answer (fired or deduped) is kept there 10 minutes (lib/types.lua
--          ADMIN_REPLY_MS) for a re-send; holding anything else, it fails the call before any write
-- ARGV[1] mode: init (start the state at ARGV[2] unless it exists; a state as this call leaves
--         it answers initialized again) | fire | missed (slots too
--         late to run: only move the state on) | advance (disabled: move on, count nothing)
--         | manual (run now, whatever the state)
-- ARGV[2] slot ms   ARGV[3] next slot ms   ARGV[4] now ms   ARGV[5] '1' = skip while the
-- previous run is unfinished   ARGV[6] job name   ARGV[7] job id   ARGV[8] envelope
-- ARGV[9] priority (an integer in -1000..1000)   ARGV[10] wake channel   ARGV[11] events channel   ARGV[12] pool id
-- ARGV[13] schedule name (a schedule deleted meanwhile is left alone: status gone)
-- ARGV[14] dedup mode ('' = none, see lib/dedup.lua)   ARGV[15] dedup key   ARGV[16] window ms
--          (a whole number, at least 1, in mode 't')
-- ARGV[17] the definition this call fires ('' = any): another one registered under the name
-- (another pool's code defines it differently, or a Client replaced the runtime schedule since
-- the pool or the manual run read it) is left alone: status conflict. So once add_schedule has
-- replaced a definition, no call carrying the old one fires, initializes or moves the state on.
-- ARGV[18] the tolerance (ms, a whole number; '' or absent = no check, for a clock a test
--          drives): a slot (modes init, fire, missed, advance) later than the Redis clock
--          (TIME) plus it is refused before any write, status ahead: a pool whose clock runs
--          ahead cannot write a `last` in the future, which would silence the schedule until
--          then. A re-send of a call that wrote is answered from `answer` before this check,
--          so it gives the first answer even if TIME moved; one refused is refused again.
-- A disabled schedule (`disabled` in its state) moves on without running (status advanced),
-- whatever the pool read a moment earlier. With skip_if_running, the last scheduled run (`run`)
-- and the last run of any kind (`job`, a manual one included) must both have ended.
-- A schedule deleted meanwhile is left alone, for a manual run too (no state is recreated); a
-- re-send of a call that wrote is answered as its first before the definition is looked up (a
-- run enqueued, then its schedule deleted, is still `fired` to its re-send, not gone).
-- Returns {status, job id}: status is fired | skipped (previous run unfinished; job id = that
-- run) | deduped (counted as skipped; job id = the job holding its dedup key) | missed |
-- advanced | initialized | stale (another pool already handled this slot) | gone | conflict |
-- ahead.
-- A bad priority or throttle window, a key of another type, a seq that is not a counter, or a
-- corrupt state (a `last` that is no fire time in ms in 0..MAX_SLOT_MS, in every mode but
-- manual; a `runs`, `skipped` or `misfires` that is no counter) fails the call before its first
-- write, with an error reply naming the field.
-- Idempotent on re-send (redis-py sends a call again when its reply is lost): the job id of
-- ARGV[7] is a fresh one for each call (also in modes missed and advance), and every answer
-- that wrote something is kept in the state (`answer`: '<ARGV[7]> <status> <job id>'), so
-- that the same call sent again writes nothing and gives the same answer. A manual run's answer
-- is also kept in its reply key (KEYS[18]), which no other call overwrites: `answer` may be
-- another run's by the re-send (a manual run answered deduped was counted in `skipped` again,
-- or enqueued after all once the holder ended). A run (manual or scheduled) is also recognised
-- by its job id (stored, or ended recently: its tombstone or result record), so a fire re-sent
-- after delete_schedule (its `answer` gone) answers fired, also once it is defined again; one
-- that stored no job finds no `last` in the state started again: stale. An
-- answer read
-- and not written (gone, conflict, a re-send's, stale) writes nothing first: a demoted master
-- refuses it (`read` below; mode init's answers come after its HSETNX, a write).
--@include events
--@include dedup
--@include types
--@include wake
-- the latest fire time a state may hold: the last ms of the year 9999 (store.py MAX_SLOT_MS)
local MAX_SLOT_MS = 253402300799999
local state, mode, slot = KEYS[1], ARGV[1], tonumber(ARGV[2])
local id, name, prio = ARGV[7], ARGV[6], tonumber(ARGV[9])
if not is_priority(prio) then
  return redis.error_reply('errands: schedule_fire: priority must be an integer in -1000..1000, got ' .. ARGV[9])
end
local window = tonumber(ARGV[16])
-- the window goes to SET PX: an integer Redis reads, 1..MAX_MS (is_whole took 10^17, which Lua
-- hands to SET PX as '1e+17': it raised after the job was stored)
if ARGV[14] == 't' and not is_int(ARGV[16], 1, MAX_MS) then
  return redis.error_reply('errands: schedule_fire: a throttle window must be a whole number of'
    .. ' ms in 1..2^53, got ' .. ARGV[16])
end
local TYPES = {'HLEN', 'HLEN', 'HLEN', 'GET', 'SCARD', 'SCARD', false, 'ZCARD', 'ZCARD', 'ZCARD',
  'HLEN', 'HLEN', 'HLEN', 'GET', 'ZCARD', false, 'ZCARD', 'GET'}
local wrong, got = wrong_type(function(j) return TYPES[j] end, 'no job was stored')
wrong = wrong or not_counter(KEYS[4], 'no job was stored')  -- (INCR comes after the state's writes)
if wrong then
  return wrong
end
-- the reply key of a manual run (KEYS[18], read by wrong_type's GET): '<status> <job id>'
local reply = mode == 'manual' and id ~= '' and KEYS[18]
local kept = reply and got[18]
if kept and not (string.match(kept, '^fired %S+$') or string.match(kept, '^deduped %S*$')) then
  return redis.error_reply('errands: schedule_fire: ' .. reply .. ' holds no answer of this'
    .. ' script: no job was stored, got ' .. string.sub(kept, 1, 40))
end
local tolerance = ARGV[18] or ''
if tolerance ~= '' and not is_int(tolerance, 0, MAX_MS) then
  return redis.error_reply('errands: schedule_fire: the tolerance must be a whole number of ms,'
    .. ' got ' .. tolerance)
end
-- an answer read, not written (gone, conflict, a re-send's, stale): a write of nothing first
-- (lib/types.lua unwritten), so that a demoted master refuses it, where the new master may lack
-- the slot's fire (not replicated) or hold the definition (stored since)
local function read(status, job)
  return unwritten('HDEL', state, {status, job})
end
-- a re-send's answer first, also once the definition is gone (deleted since the first send,
-- whose job is queued: its re-send answers as the first, not gone)
if kept then
  return read(string.match(kept, '^(%S+) ?(.*)$'))
end
if id ~= '' then
  local answered = redis.call('HGET', state, 'answer')
  if answered and string.sub(answered, 1, #id + 1) == id .. ' ' then
    return read(string.match(answered, '^%S+ (%S+) ?(.*)$'))
  end
  -- (a fire's too: delete_schedule drops `answer`, and once the schedule is defined again a
  -- re-send found no `last` and queued its job id a second time)
  if redis.call('HEXISTS', KEYS[2], id) == 1
      or redis.call('ZSCORE', KEYS[15], id) or redis.call('EXISTS', KEYS[16]) == 1 then
    return read('fired', id)
  end
end
local definition = redis.call('HGET', KEYS[11], ARGV[13])
if not definition then
  return read('gone', '')
end
-- (after the re-send's answer: a call that wrote answers the same if the definition changed since)
if ARGV[17] ~= '' and definition ~= ARGV[17] then
  return read('conflict', '')
end
-- the answer of a call that wrote something, kept for a re-send of the same call
local function answer(status, job)
  if id ~= '' then
    redis.call('HSET', state, 'answer', id .. ' ' .. status .. ' ' .. job)
  end
  if reply then
    redis.call('SET', reply, status .. ' ' .. job, 'PX', ADMIN_REPLY_MS)
  end
  return {status, job}
end
-- a corrupt state (written by hand, a bad restore): a `last` that is no fire time in ms (an
-- integer as Redis spells it, in 0..MAX_SLOT_MS; read by every mode but manual, which leaves it
-- alone), or a counter HINCRBY refuses, fails the call before its first write
local got = redis.call('HMGET', state, 'last', 'runs', 'skipped', 'misfires')
if mode ~= 'manual' and got[1] and not is_int(got[1], 0, MAX_SLOT_MS) then
  return redis.error_reply('errands: schedule_fire: ' .. state .. ' field last holds '
    .. string.sub(got[1], 1, 40) .. ', not a fire time in ms: nothing written (a corrupt state;'
    .. ' delete_schedule() starts it again)')
end
local bad = not_counters(state, {'runs', 'skipped', 'misfires'}, {got[2], got[3], got[4]},
  'nothing written (a corrupt state)')
if bad then
  return bad
end
local last = tonumber(got[1] or '-1')
-- no `last` (modes fire, missed, advance, which a pool sends only after it read one): the state
-- was deleted since (delete_schedule, maybe added again): stale, nothing written; its pool
-- starts the state again from now. (A re-send of a call that stored no job, skipped or missed,
-- enqueued a slot from before the schedule was defined again, or set `last` to it.)
if mode ~= 'manual' and mode ~= 'init' and not got[1] then
  return read('stale', '')
end
-- a slot ahead of the Redis clock (ARGV[18]); mode init checks it only where it would write
if tolerance ~= '' and mode ~= 'manual' and not (mode == 'init' and last >= 0) then
  local t = redis.call('TIME')
  local redis_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if slot > redis_ms + tonumber(tolerance) then
    return read('ahead', '')
  end
end
if mode == 'init' then
  if redis.call('HSETNX', state, 'last', ARGV[2]) == 1 then
    redis.call('HSET', state, 'next', ARGV[3])
    return {'initialized', ''}
  end
  if last == slot and redis.call('HGET', state, 'next') == ARGV[3] then
    return {'initialized', ''}  -- a re-send (or another pool at the same ms: the same state)
  end
  return {'stale', ''}
end
if mode ~= 'manual' then
  if slot <= last then
    return read('stale', '')
  end
  redis.call('HSET', state, 'last', ARGV[2], 'next', ARGV[3])
  if mode == 'missed' then
    redis.call('HINCRBY', state, 'misfires', 1)
    return answer('missed', '')
  elseif mode == 'advance' or redis.call('HGET', state, 'disabled') == '1' then
    return answer('advanced', '')
  end
  if ARGV[5] == '1' then
    for _, field in ipairs({'run', 'job'}) do
      local prev = redis.call('HGET', state, field)
      if prev and redis.call('HEXISTS', KEYS[2], prev) == 1
          and not redis.call('ZSCORE', KEYS[9], prev) and not redis.call('ZSCORE', KEYS[10], prev) then
        redis.call('HINCRBY', state, 'skipped', 1)
        redis.call('HSET', state, 'skipped_at', ARGV[2])
        return answer('skipped', prev)
      end
    end
  end
end
local d = {jobs = KEYS[2], dedup = KEYS[12], dedupjob = KEYS[13], window = KEYS[14]}
if ARGV[14] ~= '' then
  local outcome, holder = dedup_holder(d, ARGV[14], ARGV[15], KEYS[8])
  if outcome then
    redis.call('HINCRBY', state, 'skipped', 1)
    if mode ~= 'manual' then
      redis.call('HSET', state, 'skipped_at', ARGV[2])
    end
    return answer('deduped', holder)
  end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], id, ARGV[8])
if prio ~= 0 then
  redis.call('HSET', KEYS[3], id, prio)
end
redis.call('SADD', KEYS[5], name)
redis.call('ZADD', KEYS[8], queue_score(seq, prio), id)
if ARGV[14] ~= '' then
  dedup_take(d, ARGV[14], ARGV[15], id, window)
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  ev_publish(KEYS[7], ARGV[11], id, '{"event":"enqueued","id":"' .. id .. '","name":"' .. name .. '"}')
end
if KEYS[17] then
  wake_one(KEYS[17], ARGV[10] .. ':', false)
elseif redis.call('SCARD', KEYS[6]) > 0 then
  redis.call('PUBLISH', ARGV[10], 'enqueue')
end
local fired = ARGV[4]
if mode ~= 'manual' then
  fired = ARGV[2]
  redis.call('HSET', state, 'run', id)
end
redis.call('HSET', state, 'job', id, 'prev', fired, 'fired_at', ARGV[4], 'by', ARGV[12])
redis.call('HINCRBY', state, 'runs', 1)
return answer('fired', id)
