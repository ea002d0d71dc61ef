"""A duplicate that replaces a queued holder's envelope (debounce without a delay, rerun_latest
before the start) also gives it its priority: the holder keeps its place among the jobs of its
new priority, as Client.update_job moves it (docs/dedup.md)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

MODES = {
    "debounce": Dedup("u7", debounce=True),
    "rerun_latest": Dedup("u7", until="finished", rerun_latest=True),
}


async def order(redis: Redis, keys: Keys) -> list[str]:
    return [x.decode() for x in await redis.zrange(keys.queue("notify"), 0, -1)]


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("partition", [None, "p"])
async def test_a_replaced_queued_holder_is_queued_at_its_new_priority(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client, mode: str,
    partition: str | None,
) -> None:  # fmt: skip
    keys, d = Keys(namespace), MODES[mode]
    before = await enqueuer.enqueue("notify", {"n": "before"}, partition=partition)
    holder = await enqueuer.enqueue("notify", {"n": 1}, partition=partition, dedup=d)
    after = await enqueuer.enqueue("notify", {"n": "after"}, partition=partition)
    assert before is not None and holder is not None and after is not None
    assert await order(redis, keys) == [before.id, holder.id, after.id]
    urgent = await enqueuer.enqueue("notify", {"n": 2}, priority=10, partition=partition, dedup=d)
    assert urgent is not None and urgent.dedup is not None
    assert (urgent.dedup.status, urgent.id) == ("replaced", holder.id)
    info = await client.job(holder.id)
    assert info is not None and (info.args, info.priority) == ({"n": 2}, 10)
    assert await order(redis, keys) == [holder.id, before.id, after.id]  # ahead, as it says
    await assert_invariants(redis, namespace)
    # an edit back to priority 0 puts it back between the two (it kept its sequence number):
    # with the old score kept under priority 10, the edit moved it 10 steps behind `after`
    await client.update_job(holder.id, priority=0)
    assert await order(redis, keys) == [before.id, holder.id, after.id]
    # and a duplicate at priority 0 again leaves it there
    calm = await enqueuer.enqueue("notify", {"n": 3}, partition=partition, dedup=d)
    assert calm is not None and calm.dedup is not None and calm.dedup.status == "replaced"
    assert await order(redis, keys) == [before.id, holder.id, after.id]
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("partition", [None, "p", "q"])
async def test_a_replaced_holder_keeps_one_partition_index_entry(
    redis: Redis, namespace: str, enqueuer: Enqueuer, mode: str, partition: str | None
) -> None:
    """The holder's entry in the partition index (under its old score) goes with the new
    priority: one entry, under the new score and partition, or none without a partition."""
    keys, d = Keys(namespace), MODES[mode]
    holder = await enqueuer.enqueue("notify", {"n": 1}, partition="p", dedup=d)
    assert holder is not None
    urgent = await enqueuer.enqueue("notify", {"n": 2}, priority=10, partition=partition, dedup=d)
    assert urgent is not None and urgent.id == holder.id
    entries = await redis.zrange(keys.partition_queue("notify"), 0, -1)
    score = await redis.zscore(keys.queue("notify"), holder.id)
    assert score is not None
    want = [] if partition is None else [(partition, int(score), holder.id)]
    split = (e.split(b"\0") for e in entries)
    got = [(p.decode(), int(s) - 2**52, i.decode()) for p, s, i in split]
    assert got == want
    await assert_invariants(redis, namespace)
