"""A fetch finds the heads of the partitions whose turn it is at the head of the queue when
they are there (lib/limserve.lua lim_queue_heads: one ZRANGE of the queue and one HMGET of the
jobs' partitions for a round) instead of a look-up in the partition index each
(ZRANGEBYLEX). The same jobs, in the same order."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants

SPEC = {"sms": "c=1"}


async def test_heads_at_the_queue_head_need_no_look_up(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enq:
        for i in range(16):
            await enq.enqueue("sms", {}, partition=f"p{i % 8}")
    order = [i.decode() for i in await own_redis.zrange(keys.queue("sms"), 0, -1)]
    scripts = Scripts(own_redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    await scripts.fetch("p", 1, 0, [("sms", 0)], specs=SPEC)  # the script loaded
    taken: list[str] = []
    for _ in range(2):
        await own_redis.config_resetstat()
        got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=SPEC)
        stats = await own_redis.info("commandstats")
        assert got is not None and len(got) == 8
        assert "cmdstat_zrangebylex" not in stats
        assert "cmdstat_zmscore" not in stats  # (their queue scores read with them)
        # no partition waits for its rates (none read), the scan's place not read (room filled)
        assert "cmdstat_zrangebyscore" not in stats and "cmdstat_hget" not in stats
        assert stats["cmdstat_zrange"]["calls"] == 2  # the turns and the queue's head
        taken += [f.id for f in got]
        done = [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in got]
        assert await scripts.ack("p", done, False, 1, False) == []
    assert taken == order  # one job of each partition in turn, each partition's in order
    # the partitions kept in turn after their last job go with the empty index
    assert await own_redis.exists(keys.partition_queue("sms"), keys.partitions_ready("sms")) == 0
    await assert_invariants(own_redis, namespace, drained=True)


async def test_a_partition_drained_meanwhile_leaves_its_turn_at_its_look_up(
    redis: Redis, namespace: str
) -> None:
    """A partition served from the head of the queue stays in turn (it may have more); when its
    turn comes again and the look-up finds nothing, it leaves the turns."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for p in ("a", "b", "c", "c", "c"):
            await enq.enqueue("sms", {}, partition=p)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 2, [("sms", 0)], specs={"sms": "c=3"})
    assert got is not None and len(got) == 2
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"c", b"a", b"b"]
    got = await scripts.fetch("p", 1, 10, [("sms", 0)], specs={"sms": "c=3"})
    assert got is not None and len(got) == 3  # c's three; a and b looked up: drained
    assert await redis.exists(keys.partitions_ready("sms")) == 0


async def test_a_look_up_after_a_head_from_the_queue_skips_what_was_passed(
    own_redis: Redis, namespace: str
) -> None:
    """p's index holds a stale entry (its job left the queue) before j1, which a round takes
    from the head of the queue; p's next look-up in the same call starts after j1 (it counted
    the entries passed: one, and found j1 again, a wasted look-up and round)."""
    keys = Keys(namespace)
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enq:
        stale = await enq.enqueue("sms", {}, partition="p")
        j1 = await enq.enqueue("sms", {}, partition="p")
        a = [await enq.enqueue("sms", {}, partition="a") for _ in range(3)]
        j2 = await enq.enqueue("sms", {}, partition="p")
    await own_redis.zrem(keys.queue("sms"), stale.id)
    scripts = Scripts(own_redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    await scripts.fetch("p", 1, 0, [("sms", 0)], specs={"sms": "c=5"})  # the script loaded
    await own_redis.config_resetstat()
    got = await scripts.fetch("p", 1, 4, [("sms", 0)], specs={"sms": "c=5"})
    stats = await own_redis.info("commandstats")
    assert got is not None and {f.id for f in got} == {j1.id, a[0].id, a[1].id, j2.id}
    assert stats["cmdstat_zrangebylex"]["calls"] == 1  # j2's
