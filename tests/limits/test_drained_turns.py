"""A partition served from the head of the queue keeps its turn (it may have more jobs: lib/
limserve.lua lim_take_head). Those left without jobs must not hold a freed or new partition
back: when the partition index holds fewer entries than the turns (and few), the turns of the
partitions without any go at the end of the fetch; a fetch that spent its budget on such
partitions asks to be called again at once."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Fetched, Scripts
from tests.support.invariants import assert_invariants

SPEC = {"sms": "c=1"}


async def _take(scripts: Scripts, n: int) -> list[Fetched]:
    """fetches of 32 until n jobs are taken"""
    taken: list[Fetched] = []
    while len(taken) < n:
        got = await scripts.fetch("p", 1, 32, [("sms", 0)], specs=SPEC)
        assert got
        taken += got
    return taken


async def _ack(scripts: Scripts, taken: list[Fetched]) -> None:
    done = [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in taken]
    for s in range(0, len(done), 1000):
        assert await scripts.ack("p", done[s : s + 1000], False, 1, False) == []


async def test_a_freed_partition_is_not_behind_drained_ones(redis: Redis, namespace: str) -> None:
    """B's second job waits for B's first (c=1) while 400 other partitions are served from the
    head of the queue, one job each. Once they are taken, none of them keeps a turn, and B's
    second job comes with the first fetch after the acknowledgements."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        first = await enq.enqueue("sms", {}, partition="B")
        second = await enq.enqueue("sms", {}, partition="B")
        for i in range(400):
            await enq.enqueue("sms", {}, partition=f"x{i}")
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    taken = await _take(scripts, 401)
    assert taken[0].id == first.id
    assert await redis.zcard(keys.partition_queue("sms")) == 1  # B's second job
    assert await redis.exists(keys.partitions_ready("sms")) == 0  # (B is busy: no turn)
    await _ack(scripts, taken)
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"B"]
    got = await scripts.fetch("p", 1, 32, [("sms", 0)], specs=SPEC)
    assert got is not None and [f.id for f in got] == [second.id]
    await _ack(scripts, got)
    await assert_invariants(redis, namespace, drained=True)


async def test_a_fetch_spent_on_drained_partitions_asks_again_at_once(
    redis: Redis, namespace: str
) -> None:
    """With more jobs indexed than a fetch looks at (C's 200, held back by c=1), the turns of
    the 300 partitions served from the head of the queue go one look-up each; a fetch that
    spent its budget (4 x 32 + 16) on them and took nothing says to come back at once (a wait of
    1 ms), not after a poll interval. B and C get their turns within the next fetches."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(300):
            await enq.enqueue("sms", {}, partition=f"x{i}")
        await enq.enqueue("sms", {}, partition="B")
        b2 = await enq.enqueue("sms", {}, partition="B")
        cs = [await enq.enqueue("sms", {}, partition="C") for _ in range(200)]
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    taken = await _take(scripts, 302)
    await _ack(scripts, taken)
    got = await scripts.fetch("p", 1, 32, [("sms", 0)], specs=SPEC)
    assert got is not None and got == [] and got.wait == 0.001
    calls = 1
    while not got:
        got = await scripts.fetch("p", 1, 32, [("sms", 0)], specs=SPEC)
        calls += 1
        assert got is not None and calls < 4
    assert sorted(f.id for f in got) == sorted([b2.id, cs[1].id])


async def test_a_fetch_spent_on_a_partition_kept_in_turn_does_not_ask_again(
    redis: Redis, namespace: str
) -> None:
    """A partition whose running count is not a counter keeps its turn without starting a job
    (lib/limserve.lua lim_bad_count): a fetch that spent its budget on it took no turn away, and
    asks for no early call (the pool would come back every millisecond)."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("sms", {}, partition="bad")
    await redis.hset(keys.partitions_running("sms"), "bad", "x")
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 1, [("sms", 0)], specs=SPEC)
    assert got is not None and got == [] and got.wait is None
