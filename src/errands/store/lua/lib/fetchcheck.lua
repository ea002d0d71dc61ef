-- lib/fetchcheck: fetch.lua's checks of its keys before its first write (included by
-- `--@include fetchcheck` after types), with fetch.lua's KEYS and ARGV (see its header: K keys
-- before Q per job name, nq names).

-- fetch_types(K, Q, nq, unique, partitioned, deduped, rated, wrong_part): the error reply
-- naming the first key of another type than this call needs (wrong_part first, partitions' from
-- lib/limits.lua's lim_any), or a counter it INCRs that is not one, else nil, then each checked
-- key's answer (lib/types.lua's wrong_type); unique, partitioned, deduped: what the call found;
-- rated[i]: whether job name i has a rate
local function fetch_types(K, Q, nq, unique, partitioned, deduped, rated, wrong_part)
  -- the keys this call touches, by what it found: read before the first write, those it only
  -- reads first (pools, unique_of_job, dedup_of_job, recoveries) fail cleanly by themselves, and
  -- lib/events.lua reads `listening` with pcall
  local TYPES = {'HLEN', 'HLEN', 'ZCARD', 'SCARD', 'SCARD', unique and 'HLEN', false,
    unique and 'ZCARD', false, false, false, 'HLEN', 'GET', false, false, deduped and 'HLEN',
    false, partitioned and 'HLEN'}
  local PER_QUEUE = {'ZCARD', 'ZCARD', 'ZCARD', 'ZCARD', 'HLEN', 'HLEN', 'ZCARD', 'ZCARD'}
  local USED = {true, partitioned, partitioned, partitioned, partitioned, 'rated', 'rated', true}
  local wrong, sizes = wrong_type(function(j)
    if j <= K then
      return TYPES[j]
    end
    local i, at = math.floor((j - K - 1) / Q) + 1, (j - K - 1) % Q + 1
    local used = USED[at]
    if used == 'rated' then
      used = rated[i]
    end
    return used and j <= K + nq * Q and PER_QUEUE[at]  -- (not the arming key: of any type)
  end, 'nothing fetched')
  -- the counters INCRed after the first write (the first job taken, a partition's turn: seq's GET)
  wrong = wrong_part or wrong or not_counter(KEYS[13], 'nothing fetched')
    or (partitioned and not_counter(KEYS[15], 'nothing fetched'))
  if not wrong then  -- running[name] of each name: read for its room, HINCRBY'd after writes
    local names = {}
    for i = 1, nq do
      names[i] = ARGV[7 + 3 * i]
    end
    wrong = not_hash_counter(KEYS[2], names, 'nothing fetched')
  end
  return wrong, sizes
end
