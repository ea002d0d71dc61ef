"""Admin moves of a job that holds its dedup key (docs/dedup.md): a waiting holder rescheduled
or run now keeps its key (a duplicate meanwhile is dropped or replaced, naming it, never stored
beside it); a holder waiting for a retry (until finished) rescheduled keeps it too, and deleted,
hands it to its waiting rerun in the same script. (Nothing was wrong here: these tests show it.)"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

DEDUPS = {
    "started": Dedup("k"),
    "finished": Dedup("k", until="finished"),
    "debounce": Dedup("k", debounce=True),
    "rerun": Dedup("k", until="finished", rerun_latest=True),
}


@pytest.mark.parametrize("mode", list(DEDUPS))
async def test_a_waiting_holder_moved_by_hand_keeps_its_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client, mode: str
) -> None:
    keys, d = Keys(namespace), DEDUPS[mode]
    job = await enqueuer.enqueue("x", {"n": 1}, dedup=d, delay=60)
    assert job is not None and job.dedup is not None and job.dedup.enqueued
    assert await client.reschedule(job.id, time.time() + 600)
    assert await redis.hget(keys.dedup, "x:k") == job.id.encode()
    assert await client.run_scheduled_now(job.id)
    assert await redis.hget(keys.dedup, "x:k") == job.id.encode()
    dup = await enqueuer.enqueue("x", {"n": 2}, dedup=d)
    assert dup is not None and dup.dedup is not None
    assert (dup.dedup.status, dup.dedup.holder) in {("dropped", job.id), ("replaced", job.id)}
    assert await redis.hlen(keys.jobs) == 1
    await assert_invariants(redis, namespace)


async def test_a_holder_waiting_for_a_retry_keeps_its_key_and_its_delete_hands_it_over(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    keys = Keys(namespace)
    d = DEDUPS["rerun"]
    job = await enqueuer.enqueue("x", {"n": 1}, dedup=d)
    assert job is not None
    # as a start and a failed attempt leave it: in the retry set, its key marked started
    assert await redis.zrem(keys.queue("x"), job.id) == 1
    await redis.zadd(keys.retry("x"), {job.id: int(time.time() * 1000) + 60_000})
    await redis.hset(keys.dedup_of_job, job.id, "Rx:k")
    rerun = await enqueuer.enqueue("x", {"n": 2}, dedup=d)
    assert rerun is not None and rerun.dedup is not None
    assert (rerun.dedup.status, rerun.dedup.holder) == ("rerun_queued", job.id)
    assert await client.reschedule(job.id, time.time() + 600)  # now scheduled: still holding
    assert await redis.hget(keys.dedup, "x:k") == job.id.encode()
    assert await client.delete_scheduled_job(job.id)
    assert await redis.hget(keys.dedup, "x:k") == rerun.id.encode()  # handed over
    assert await redis.zscore(keys.queue("x"), rerun.id) is not None
    await assert_invariants(redis, namespace)
