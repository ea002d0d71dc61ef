"""A dedup rerun handed its key by the end of its owner is indexed by its partition (lib/dedup.lua
dedup_index): in the partition queue and partitions ready of its job name. destroy.lua and
cancel.lua did not declare those two keys nor check their type: one of another type raised
(Redis' own WRONGTYPE) after the owner was forgotten or cancelled and the rerun queued, the
call half done (no reply key, no done record of the call). Now refused by name before the
first write, as ack, settle, reap and move refuse it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from tests.support.resend import snapshot

RERUN = Dedup("k", until="finished", rerun_latest=True)


async def owner_retrying_with_a_rerun(redis: Redis, namespace: str) -> tuple[str, str]:
    """Job a of ``sync`` (partition a) started, then retrying; b (partition b) waits as the
    rerun of its dedup key: a's end hands the key to b, which goes on the queue."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    enqueuer = Enqueuer(redis, namespace=namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=RERUN, partition="a")
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 0, 10, [("sync", 0)])
    assert a is not None and got is not None and [f.id for f in got] == [a.id]
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=RERUN, partition="b")
    assert b is not None and b.dedup is not None and b.dedup.status == "rerun_queued"
    retry = Settle(a.id, "sync", "retry", keys.retry("sync"), 1, 1, score_ms=10**12, token="*")
    assert await scripts.settle("p", retry)
    return a.id, b.id


@pytest.mark.parametrize("family", ["partition_queue", "partitions_ready"])
@pytest.mark.parametrize("action", ["destroy", "cancel"])
async def test_an_end_handing_a_partitioned_rerun_its_key_meets_a_bad_index_key(
    redis: Redis, namespace: str, action: str, family: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    a, b = await owner_retrying_with_a_rerun(redis, namespace)
    key = getattr(keys, family)("sync")
    await redis.delete(key)
    await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=rf"WRONGTYPE {key} holds another type: nothing"):
        if action == "destroy":
            await scripts.destroy(a, "sync", 3, call="c1")
        else:
            await scripts.cancel(a, "sync", 1, 60_000, call="c1")
    assert await snapshot(redis, namespace) == before
    await redis.delete(key)  # repaired: the call goes through, b queued and indexed
    if action == "destroy":
        assert await scripts.destroy(a, "sync", 3, call="c1") == "destroyed"
        assert await scripts.destroy(a, "sync", 3, call="c1") == "destroyed"  # a re-send
    else:
        assert await scripts.cancel(a, "sync", 1, 60_000, call="c1") == "cancelled"
        assert await scripts.cancel(a, "sync", 1, 60_000, call="c1") == "cancelled"
    assert await redis.zrange(keys.queue("sync"), 0, -1) == [b.encode()]
    assert await redis.zrange(keys.partitions_ready("sync"), 0, -1) == [b"b"]
    assert await redis.zcard(keys.partition_queue("sync")) == 1
