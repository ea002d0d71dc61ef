"""Fairness across partitions, measured on the fetch script alone (no pools: exact and quick): a
partition with 10,000 jobs waiting and 100 small ones; Jain's index of the starts while all are
backlogged, and the small ones done within their own share."""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants


def jain(shares: list[int]) -> float:
    return sum(shares) ** 2 / (len(shares) * sum(s * s for s in shares))


async def test_a_big_partition_does_not_delay_small_ones(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue_many([("charge", {}, {"partition": "big"}) for _ in range(10_000)])
        small = [("charge", {}, {"partition": f"s{i}"}) for i in range(100) for _ in range(3)]
        await enq.enqueue_many(small)  # type: ignore[arg-type]
        now = to_ms(enq.clock.now())
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    order: list[str] = []
    part = {}
    while len(order) < 303:
        got = await scripts.fetch("p", now, 16, [("charge", 0)])
        assert got
        ids = [f.id for f in got]
        values = await redis.hmget(keys.partitions, ids)
        part.update(zip(ids, values, strict=True))
        order += [part[i].decode() for i in ids]
    first = Counter(order[:303])
    # three rounds: every partition started 3 jobs, the big one too
    assert jain(list(first.values())) >= 0.95
    assert all(first[f"s{i}"] == 3 for i in range(100))
    # within the first round, the 100 small partitions got their turn before the big one's 2nd
    assert Counter(order[:101])["big"] == 1
    await assert_invariants(redis, namespace)
