"""A debounced duplicate with a delay moves a queued holder of a partition to the scheduled set:
its entry in the partition index (ready jobs by partition) goes with it, whatever the new
partition; one without a delay queues a scheduled holder and indexes it once (docs/dedup.md)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

D = Dedup("u7", debounce=True)


async def index(redis: Redis, keys: Keys) -> list[tuple[str, int, str]]:
    """The partition index of job name notify: (partition, queue score, job id) per entry."""
    entries = await redis.zrange(keys.partition_queue("notify"), 0, -1)
    split = (e.split(b"\0") for e in entries)
    return [(p.decode(), int(s) - 2**52, i.decode()) for p, s, i in split]


@pytest.mark.parametrize("partition", [None, "p", "q"])
@pytest.mark.parametrize("priority", [0, 10])
async def test_a_delay_takes_a_queued_holder_out_of_the_partition_index(
    redis: Redis, namespace: str, enqueuer: Enqueuer, partition: str | None, priority: int
) -> None:
    keys = Keys(namespace)
    holder = await enqueuer.enqueue("notify", {"n": 1}, partition="p", dedup=D)
    assert holder is not None
    assert [i for _, _, i in await index(redis, keys)] == [holder.id]
    later = await enqueuer.enqueue(
        "notify", {"n": 2}, delay=60, priority=priority, partition=partition, dedup=D
    )
    assert later is not None and later.dedup is not None
    assert (later.dedup.status, later.id) == ("replaced", holder.id)
    assert await redis.zscore(keys.queue("notify"), holder.id) is None
    assert await redis.zscore(keys.scheduled("notify"), holder.id) is not None
    assert await index(redis, keys) == []  # scheduled: not a ready job of any partition
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("partition", [None, "p", "q"])
async def test_no_delay_queues_a_scheduled_holder_indexed_once(
    redis: Redis, namespace: str, enqueuer: Enqueuer, partition: str | None
) -> None:
    keys = Keys(namespace)
    holder = await enqueuer.enqueue("notify", {"n": 1}, delay=60, partition="p", dedup=D)
    assert holder is not None
    assert await index(redis, keys) == []
    now = await enqueuer.enqueue("notify", {"n": 2}, partition=partition, dedup=D)
    assert now is not None and now.id == holder.id
    score = await redis.zscore(keys.queue("notify"), holder.id)
    assert score is not None
    want = [] if partition is None else [(partition, int(score), holder.id)]
    assert await index(redis, keys) == want
    await assert_invariants(redis, namespace)
