"""A reap that frees a dead pool's running slot of a capped name wakes the idle pools, whatever
becomes of the job: requeued, buried (too many recoveries), cancelled (a stored request) or gone
(its record deleted). A fetch that fills its name's max_concurrency answers no wait of that
name's rates (9c664e0): the idle pool relies on a wake-up when a slot frees. reap.lua published
only when it requeued a job or gave a partition its turn: a slot freed otherwise left a capped
idle pool asleep until its poll interval (3 of 4 failed)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from tests.support.ready import ready_to_fetch

SPEC = "r=100/60000"  # a rate, not full here


@pytest.mark.parametrize("how", ["requeued", "buried", "cancelled", "gone"])
async def test_a_reap_freeing_a_capped_slot_wakes_the_idle_pools(
    redis: Redis, namespace: str, how: str
) -> None:
    keys = Keys(namespace)
    jobs: list[EnqueueItem] = [("work", {}, {"job_id": "j1"}), ("work", {}, {"job_id": "j2"})]
    scripts = await ready_to_fetch(redis, namespace, jobs, pools=("dead", "idle"))
    got = await scripts.fetch("dead", 1, 1, [("work", 1)], specs={"work": SPEC})
    assert got is not None and [j.id for j in got] == ["j1"]
    got = await scripts.fetch("idle", 1, 10, [("work", 1)], specs={"work": SPEC})
    assert got is not None and got == [] and got.wait is None  # capped: no wait, idle marked
    assert await redis.zscore(keys.idle_for("work"), "idle") is not None
    if how == "buried":
        await redis.hset(keys.recoveries, "j1", "2")  # type: ignore[misc]  # the 3rd: buried
    elif how == "cancelled":
        await redis.hset(keys.cancel_requests, "j1", "cancel")  # type: ignore[misc]
    elif how == "gone":
        await redis.hdel(keys.jobs, "j1")  # type: ignore[misc]
    await redis.zadd(keys.pools, {"dead": 1})  # died
    pubsub = redis.pubsub()
    await pubsub.psubscribe(keys.wake_channel + "*")
    try:
        raw = await redis.zrange(keys.in_progress("dead"), 0, -1)
        members = [(m, *m.decode().split(":", 1)) for m in raw]
        await scripts.reap("dead", 1000, 3, b'{"error":"x"}', b'{"error":"m"}', members)
        assert await redis.hget(keys.running, "work") in (b"0", None)  # the slot is free
        woken = []
        for _ in range(20):
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is not None:
                woken.append(msg["channel"])
                break
            await asyncio.sleep(0)
        # the capped idle pool (no wait given it) is told the slot is free
        assert woken, f"{how}: slot freed by reap, no idle pool woken"
    finally:
        await pubsub.aclose()
