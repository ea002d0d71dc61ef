"""What the flow-controlled job type and the workflow runs leave in Redis once every worker
stopped (docs/limits.md: "a partition that drains leaves nothing behind (its running counter
field goes at 0, its rate log a window and 1-2 s after its last start)"; docs/workflows.md:
"when its last member ends, every key of the run ... expires after linger"). The invariant
checker already reports a rate log or a finished run's key without a TTL, a partition field
without its job and the partition index, turns and counters left once drained; this adds the
bounds: nothing waits for its rate, a rate log expires within a window and 2 s (lib/ratelog.lua
lim_tidy renews its TTL to the window + 2 s once it falls to the window + 1 s), a finished
run's keys within its linger. And once stopped, the deduplicated job type's keys hold nothing
(every holder's life ended: docs/dedup.md, "When the key is freed")."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from errands.store.keys import Keys
from tests.support.invariants.layout import WORKFLOW_PARTS

__all__ = ["dedup_key_leaks", "flow_key_leaks"]


async def flow_key_leaks(
    admin: Redis, keys: Keys, name: str, per: float, runs: Iterable[str], linger: float
) -> list[str]:
    """Every key of job type ``name``'s partitions, or of the workflow runs ``runs``, left
    beyond its bound (a leak), one line each."""
    runs = sorted(runs)
    bounded = [(keys.rate_log(name), per + 2.0), (keys.rate_expiry(name), per + 2.0)]
    bounded += [(keys.workflow(r, part), linger) for r in runs for part in ("", *WORKFLOW_PARTS)]
    async with admin.pipeline(transaction=False) as pipe:
        pipe.zrange(keys.partitions_waiting(name), 0, -1, withscores=True)
        for key, _bound in bounded:
            pipe.pttl(key)
        replies = await pipe.execute()
    out = [
        f"{keys.partitions_waiting(name)} still holds {m!r} (due {s:.0f})" for m, s in replies[0]
    ]
    for (key, bound), ttl in zip(bounded, replies[1:], strict=True):
        if ttl == -1 or ttl > bound * 1000:
            out.append(f"{key}: TTL {ttl} ms, past its bound of {bound * 1000:.0f} ms")
    return out


async def dedup_key_leaks(
    admin: Redis, keys: Keys, name: str, dedup_keys: Iterable[str], jobs: Iterable[str]
) -> list[str]:
    """Every record of job type ``name``'s dedup keys ``dedup_keys`` or of the jobs ``jobs``
    left once every worker stopped (docs/dedup.md, "Data": the owner in ``dedup``, the waiting
    rerun in ``dedupnext`` and ``dedupreruns``, the owner's side in ``dedupjob``, a throttle
    window): the key's holder's life ended, so it must be released, one line each."""
    fields = [f"{name}:{key}" for key in sorted(dedup_keys)]
    jobs = sorted(jobs)
    if not fields:
        return []
    async with admin.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.dedup, fields)
        pipe.hmget(keys.dedup_next, fields)
        for field in fields:
            pipe.exists(keys.dedup_window(field))
        if jobs:
            pipe.hmget(keys.dedup_of_job, jobs)
            pipe.zmscore(keys.dedup_reruns, jobs)
        owners, nexts, *rest = await pipe.execute()
    out = [f"{keys.dedup} {f} -> {o!r}" for f, o in zip(fields, owners, strict=True) if o]
    out += [f"{keys.dedup_next} {f} -> {n!r}" for f, n in zip(fields, nexts, strict=True) if n]
    out += [
        f"{keys.dedup_window(f)} exists"
        for f, n in zip(fields, rest[: len(fields)], strict=True)
        if n
    ]
    if jobs:
        records, waiting = rest[len(fields)], rest[len(fields) + 1]
        out += [f"{keys.dedup_of_job} {j} -> {r!r}" for j, r in zip(jobs, records, strict=True)
                if r]  # fmt: skip
        out += [f"{keys.dedup_reruns} holds {j}" for j, s in zip(jobs, waiting, strict=True)
                if s is not None]  # fmt: skip
    return out
