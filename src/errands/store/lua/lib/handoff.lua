-- lib/handoff: an enqueue hands a job straight to an idle pool (included by `--@include handoff`
-- in enqueue, after wake and types). A pool whose fetch found fewer jobs than it asked for
-- registers in the idle ZSET of each of its names (lib/wake.lua); for a name it takes hand-offs
-- of (no max_concurrency, no limits spec) its score is minus (deadline + 0.5): the half marks it.
-- The enqueue of one job of that name, due now, without partition, whose queue was empty, while
-- the name is not paused and has no limits set at run time, then does what the pool's fetch
-- would: it takes the job into the pool's in-progress set with an attempt record (INCR of the
-- attempt counter: the token), counts it running, and pushes "<token> <queue score> <name>
-- <id> <envelope>" on the pool's hand-off list, on which the pool blocks (BLPOP). The pool
-- starts it without a fetch. Everything a fetch writes, a hand-off writes: a pool that dies
-- with a job handed to it has it in its in-progress set, given back by the reaper; a pool
-- reads (and gives back, when stopping) what its list holds. A mark allows one hand-off, for
-- whichever of the pool's names comes first: the fetch that flags marks sets the pool's
-- arming key, the hand-off takes it (its marks of other names stay, as wake-up marks), and
-- the pool's next fetch, which counts its free slots again, arms it again. So a pool is never
-- handed more jobs than its fetch asked for (the next enqueue queues its job and wakes it).

-- the hand-off an enqueue may make of its one job to the idle pool with the latest deadline
-- of idle ZSET `idle` (read only, before the call's first write): {pool, in-progress key, list
-- key, now}, or false (the job is queued, and a pool woken, as before). `h` = {paused, pools,
-- attempts, attempt counter, running, rlimits, name, ip prefix, list prefix, arming key
-- prefix, queue size}.
-- A key of another type makes no error: the job is queued instead.
local function ho_plan(idle, h)
  if h.queued ~= 0 then  -- (before any read: a busy queue, the common case, costs nothing)
    return false
  end
  local top = redis.pcall('ZRANGE', idle, 0, 0, 'WITHSCORES')
  if top.err or not top[1] then
    return false
  end
  local score = -tonumber(top[2])
  if score == math.floor(score) then  -- not marked as taking hand-offs
    return false
  end
  local now = wake_now()
  local pool = top[1]
  local ip, box, arm = h.ip .. pool, h.box .. pool, h.arm .. pool
  -- armed: the oldest heartbeat (ms ago) the pool takes a hand-off with (a dead pool beats no
  -- more: its job waits for no reaper once its beats are that late; fetch.lua's ARGV)
  local age, beat = redis.pcall('GET', arm), redis.pcall('ZSCORE', h.pools, pool)
  age, beat = type(age) == 'string' and tonumber(age), type(beat) == 'string' and tonumber(beat)
  if score < now or not (age and beat) or now - beat > age
      or redis.pcall('SISMEMBER', h.paused, h.name) ~= 0
      or redis.pcall('HEXISTS', h.rlimits, h.name) ~= 0
      or redis.pcall('LLEN', box) ~= 0 then
    return false
  end
  local zc, hl = redis.pcall('ZCARD', ip), redis.pcall('HLEN', h.att)
  if type(zc) ~= 'number' or type(hl) ~= 'number' or not_counter(h.seq, '')
      or not_hash_counter(h.running, {h.name}, '') then
    return false
  end
  return {pool = pool, ip = ip, box = box, arm = arm, now = now}
end

-- make the hand-off `p` (ho_plan's) of job `id` (envelope `env`, queue score `score`) of `h`;
-- returns the started event's JSON when `listening`, else nil
local function ho_give(p, h, idle, id, env, score)
  redis.call('ZPOPMIN', idle)  -- p.pool: read at the top by ho_plan, in this same call
  redis.call('DEL', p.arm)  -- (its next fetch arms it again)
  local token = redis.call('INCR', h.seq)
  redis.call('HSET', h.att, id, p.pool .. ':' .. token)
  redis.call('ZADD', p.ip, p.now, id .. ':' .. h.name)
  redis.call('HINCRBY', h.running, h.name, 1)
  redis.call('RPUSH', p.box, token .. ' ' .. string.format('%d', score) .. ' ' .. h.name .. ' '
    .. id .. ' ' .. env)
end
