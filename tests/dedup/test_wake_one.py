"""An enqueue_unique or a dedup enqueue wakes one of the idle pools that serve the job's name
(store/lua/lib/wake.lua), as a plain enqueue does: they woke every idle pool (found by review)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from tests.worker.test_wake import QUIET, Fetches, Wakeups, all_idle, make_pools, running, until


@pytest.mark.parametrize("how", ["unique", "dedup"])
async def test_a_unique_or_dedup_enqueue_wakes_one_of_four_idle_pools(
    redis: Redis, redis_url: str, namespace: str, how: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 4, concurrency=4, poll_interval=QUIET)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        fetches = Fetches(pools)
        for i in range(3):
            await all_idle(redis, keys, pools)
            fetches.reset()
            async with Wakeups(redis, keys).listening() as wakeups:
                if how == "unique":
                    job = await enq.enqueue_unique("w", {"i": i})
                else:
                    job = await enq.enqueue("w", {"i": i}, dedup=Dedup(f"k{i}"))
                assert job is not None
                await until(lambda n=i: len(started) == n + 1)
                await all_idle(redis, keys, pools)
            assert len(wakeups.single) == 1 and wakeups.broadcast == 0
            assert fetches.fetching == 1  # before: all four fetched (every idle pool woken)
            assert started[-1] == wakeups.single[0]
