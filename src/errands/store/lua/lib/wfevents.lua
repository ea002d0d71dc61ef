-- lib/wfevents: the lifecycle events of workflow members the run's scripts publish (included by
-- lib/wfqueue.lua; see lib/workflows.lua), as the other scripts publish theirs (lib/events.lua:
-- only where someone listens; one EXISTS of `listening` per script call).
--@include events
-- [1]: whether someone listens to events (EXISTS `listening`), read once per call (wf_enqueued)
local WF_LISTEN = {}  --@percall

-- the `enqueued` event of job `id` (of job name `name`) a run put on its queue, as enqueue.lua
-- publishes one (lib/events.lua: only where someone listens; one EXISTS per script call). With
-- `W.evs` (a list of ids, each id's message by its key: wf_enqueue.lua, wf_end) it is kept for
-- wf_enqueued_flush (one HMGET of `listening` per 1,000), else published at once (one HMGET)
local function wf_enqueued(W, id, name)
  local P = W.P
  if WF_LISTEN[1] == nil then
    WF_LISTEN[1] = redis.call('EXISTS', P .. 'listening') == 1
  end
  if WF_LISTEN[1] then
    local msg = '{"event":"enqueued","id":"' .. id .. '","name":"' .. name .. '"}'
    if W.evs then
      W.evs[#W.evs + 1], W.evs[id] = id, msg
    else
      ev_publish(P .. 'listening', P .. 'events', id, msg)
    end
  end
end

-- publish the events wf_enqueued kept in `W.evs` (ev_publish_all), then keep none
local function wf_enqueued_flush(W)
  if W.evs and #W.evs > 0 then
    ev_publish_all(W.P .. 'listening', W.P .. 'events', W.evs)
  end
  W.evs = nil
end
