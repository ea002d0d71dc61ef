"""Per-partition slots are fenced like max_concurrency: a dead pool's slots come back through the
reaper, a zombie's late ack frees nothing; and the typed enqueue takes a partition."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Concurrency, Enqueuer, Job, WorkerPool
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants

from .support import until

SPEC = {"charge": "c=1"}


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


async def test_a_dead_pools_slot_comes_back_and_its_late_ack_frees_nothing(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    first = await enqueuer.enqueue("charge", {"n": 1}, partition="cust")
    second = await enqueuer.enqueue("charge", {"n": 2}, partition="cust")
    assert first is not None and second is not None
    now = to_ms(enqueuer.clock.now())
    await scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    got = await scripts.fetch("ghost", now, 10, [("charge", 0)], specs=SPEC)
    assert [f.id for f in got] == [first.id]  # the partition's one slot
    assert await redis.hget(keys.partitions_running("charge"), "cust") == b"1"
    await scripts.heartbeat("other", b"{}", 60_000, mode="register")
    assert await scripts.fetch("other", now, 10, [("charge", 0)], specs=SPEC) == []

    # the ghost dies: a reaper takes its job back and frees the slot (its lease retired first)
    await redis.zadd(keys.pools, {"ghost": 0})
    member = f"{first.id}:charge"
    reaped = await scripts.reap("ghost", 1000, 10, b"{}", b"{}", [(member, first.id, "charge")])
    assert reaped.requeued == 1
    assert await redis.hget(keys.partitions_running("charge"), "cust") is None
    # the zombie's late ack is refused and frees nothing
    late = Acked(first.id, "charge", b"null", now, 0, 1, got.copy()[0].token)
    assert await scripts.ack("ghost", [late], False, now, False) == [first.id]

    again = await scripts.fetch("other", now, 10, [("charge", 0)], specs=SPEC)
    assert [f.id for f in again] == [second.id]  # a reaped job goes behind, as on any queue
    assert await redis.hget(keys.partitions_running("charge"), "cust") == b"1"
    done = Acked(second.id, "charge", b"null", now, 0, 1, again[0].token)
    assert await scripts.ack("other", [done], False, now, False) == []
    assert await redis.hget(keys.partitions_running("charge"), "cust") is None
    await assert_invariants(redis, namespace)
    last = await scripts.fetch("other", now, 10, [("charge", 0)], specs=SPEC)
    assert [f.id for f in last] == [first.id]


async def test_the_typed_enqueue_takes_a_partition(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    seen: list[str | None] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=2)

    @pool.job("charge", limits=[Concurrency(1, per_partition=True)])
    async def charge(job: Job, order: int) -> None:
        seen.append(job.partition)

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enq:
        pool.bind_enqueuer(enq)
        await charge.using(partition="customer:7").enqueue(order=9)
        async with pool:
            await until(lambda: seen == ["customer:7"])
    await assert_invariants(redis, namespace, drained=True, stopped=True)
