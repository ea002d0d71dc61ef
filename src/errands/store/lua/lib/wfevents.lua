-- lib/wfevents: the lifecycle events of workflow members the run's scripts publish (included by
-- lib/wfqueue.lua; see lib/workflows.lua), as the other scripts publish theirs (lib/events.lua:
-- only where someone listens; one EXISTS of `listening` per script call).
--@include events
-- [1]: whether someone listens to events (EXISTS `listening`), read once per call (wf_listening)
local WF_LISTEN = {}  --@percall

-- whether someone listens to events (one EXISTS of `listening` per script call)
local function wf_listening(P)
  if WF_LISTEN[1] == nil then
    WF_LISTEN[1] = redis.call('EXISTS', P .. 'listening') == 1
  end
  return WF_LISTEN[1]
end

-- the event `event` of job `id` of run W (of job name `name`; `extra`, appended to its JSON:
-- ',"error":...'), as the other scripts publish one (enqueue.lua, settle.lua): `enqueued` when
-- the run put it on its queue, `dead` when it parked it in the dead set, `cancelled` when it
-- ended without running. Only where someone listens. With `W.evs` (a list of ids, each id's
-- message by its key: wf_enqueue.lua, wf_end, wf_cascade.lua, wf_cancel.lua) it is kept for
-- wf_events_flush (one HMGET of `listening` per 1,000), else published at once (one HMGET).
-- (One event per job a call: a member released is no longer waiting, nor queued once parked.)
local function wf_event(W, event, id, name, extra)
  local P = W.P
  if wf_listening(P) then
    local msg = '{"event":"' .. event .. '","id":"' .. id .. '","name":"' .. (name or '') .. '"'
      .. (extra or '') .. '}'
    if W.evs then
      W.evs[#W.evs + 1], W.evs[id] = id, msg
    else
      ev_publish(P .. 'listening', P .. 'events', id, msg)
    end
  end
end

-- publish the events wf_event kept in `W.evs` (ev_publish_all), then keep none
local function wf_events_flush(W)
  if W.evs and #W.evs > 0 then
    ev_publish_all(W.P .. 'listening', W.P .. 'events', W.evs)
  end
  W.evs = nil
end
