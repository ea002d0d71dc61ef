"""An ack frees the partition slots of all its jobs at once (lib/limits.lua lim_release_all):
the running counts read and written back with one command each per name, the turns looked up
with one, not an HGET, HINCRBY, HDEL and ZSCORE per job. The same counts and turns as before."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.records import Fetched
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants

SPEC = {"sms": "c=3"}


async def _running(redis: Redis, namespace: str) -> tuple[Scripts, list[Fetched]]:
    """Five jobs of partition a (three of them fetched: its concurrency is full, it has no
    turn) and one each of b and c (fetched), by pool p."""
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for p in ("a", "b", "c", "a", "a", "a", "a"):
            await enq.enqueue("sms", {}, partition=p)
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 10, [("sms", 0)], specs=SPEC)
    assert got is not None and len(got) == 5
    return scripts, list(got)


def _acked(got: list[Fetched]) -> list[Acked]:
    return [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in got]


async def test_an_ack_frees_its_partitions_slots_in_a_few_commands(
    own_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts, got = await _running(own_redis, namespace)
    assert await own_redis.hgetall(keys.partitions_running("sms")) == {
        b"a": b"3",
        b"b": b"1",
        b"c": b"1",
    }
    assert await own_redis.zrange(keys.partitions_ready("sms"), 0, -1) == []
    await own_redis.config_resetstat()
    assert await scripts.ack("p", _acked(got), False, 1, False) == []
    stats = await own_redis.info("commandstats")
    # no command per job: the partitions, the counts (checked, then read) and turns once each
    assert "cmdstat_hget" not in stats and "cmdstat_zscore" not in stats
    assert stats["cmdstat_hincrby"]["calls"] == 2  # running[sms] and stats' processed
    # the attempts, the envelopes, the partitions, the partitions' running counts (read once:
    # checked, then counted down), running[sms] and processed checked as counters
    assert stats["cmdstat_hmget"]["calls"] == 6
    assert await own_redis.exists(keys.partitions_running("sms")) == 0
    assert await own_redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"a"]  # a turn again
    rest = await scripts.fetch("p", 1, 10, [("sms", 0)], specs=SPEC)
    assert rest is not None and len(rest) == 2
    assert await scripts.ack("p", _acked(list(rest)), False, 1, False) == []
    await assert_invariants(own_redis, namespace, drained=True)


async def test_an_ack_of_some_jobs_of_a_partition_counts_the_others(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts, got = await _running(redis, namespace)
    of_a = [f for f in got if await redis.hget(keys.partitions, f.id) == b"a"]
    assert len(of_a) == 3
    # two of a's three (twice the same entry: acknowledged once) and b's
    of_b = [f for f in got if await redis.hget(keys.partitions, f.id) == b"b"]
    done = _acked(of_a[:2] + of_a[:1] + of_b)
    assert await scripts.ack("p", done, False, 1, False) == []
    assert await redis.hgetall(keys.partitions_running("sms")) == {b"a": b"1", b"c": b"1"}
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"a"]
    assert await redis.hlen(keys.running) == 1 and await redis.hget(keys.running, "sms") == b"2"
