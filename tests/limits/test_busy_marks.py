"""A partition left out of its turns because its concurrency is full is marked in
``pbusy:<name>`` (lib/limserve.lua lim_mark_busy), and only such a one is looked at by an ack
(lib/limits.lua lim_release_all): an ack of jobs of partitions that never fill their
concurrency looks up no turn (the key does not exist), yet a busy one gets its turn back."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.records import Fetched
from errands.store.scripts import Acked, Scripts, Settle
from tests.support.invariants import assert_invariants


async def _setup(redis: Redis, namespace: str, parts: str) -> Scripts:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for p in parts:
            await enq.enqueue("sms", {}, partition=p)
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    return scripts


async def _fetch(scripts: Scripts, n: int, spec: str) -> list[Fetched]:
    got = await scripts.fetch("p", 1, n, [("sms", 0)], specs={"sms": spec})
    assert got is not None
    return list(got)


def _acked(got: list[Fetched]) -> list[Acked]:
    return [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in got]


async def test_an_ack_of_partitions_that_are_not_busy_looks_up_no_turn(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _setup(redis, namespace, "abcabc")
    got = await _fetch(scripts, 3, "c=2")
    assert await redis.exists(keys.partitions_busy("sms")) == 0
    await redis.config_resetstat()
    assert await scripts.ack("p", _acked(got), False, 1, False) == []
    stats = await redis.info("commandstats")
    # (one ZMSCORE: the in-progress entries; none of the turns, no look-up of a head)
    assert stats["cmdstat_zmscore"]["calls"] == 1 and "cmdstat_zscore" not in stats
    assert "cmdstat_zrangebylex" not in stats
    assert await redis.exists(keys.partitions_running("sms")) == 0
    # each kept its turn (served from the head of the queue, with more behind)
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"a", b"b", b"c"]
    rest = await _fetch(scripts, 10, "c=2")
    assert len(rest) == 3
    assert await scripts.ack("p", _acked(rest), False, 1, False) == []
    await assert_invariants(redis, namespace, drained=True)


async def test_a_busy_partition_is_marked_and_its_ack_gives_the_turn_back_once(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _setup(redis, namespace, "aaab")
    first = await _fetch(scripts, 1, "c=1")  # a's first job
    assert await redis.exists(keys.partitions_busy("sms")) == 0
    second = await _fetch(scripts, 10, "c=1")  # b's; a is busy: left out, marked
    assert len(second) == 1
    assert await redis.hgetall(keys.partitions_busy("sms")) == {b"a": b"1"}
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == []
    await assert_invariants(redis, namespace)
    done = _acked(first)
    assert await scripts.ack("p", done, False, 1, False) == []
    assert await redis.exists(keys.partitions_busy("sms")) == 0
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"a"]
    # a re-sent ack frees nothing again: a keeps its one turn, its count stays absent
    turn = await redis.zscore(keys.partitions_ready("sms"), "a")
    assert await scripts.ack("p", done, False, 1, False) == []
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1, withscores=True) == [
        (b"a", turn)
    ]
    assert await redis.hgetall(keys.partitions_running("sms")) == {b"b": b"1"}
    third = await _fetch(scripts, 10, "c=1")  # a's second job; then a is busy again
    assert len(third) == 1
    assert await redis.hgetall(keys.partitions_busy("sms")) == {b"a": b"1"}
    await assert_invariants(redis, namespace)
    assert await scripts.ack("p", _acked(second + third), False, 1, False) == []
    last = await _fetch(scripts, 10, "c=1")
    assert len(last) == 1
    assert await scripts.ack("p", _acked(last), False, 1, False) == []
    await assert_invariants(redis, namespace, drained=True)


async def test_a_mark_left_by_a_settle_goes_when_the_partition_is_served(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _setup(redis, namespace, "aaa")
    first = await _fetch(scripts, 1, "c=1")
    assert await _fetch(scripts, 10, "c=1") == []  # a busy: marked
    assert await redis.hgetall(keys.partitions_busy("sms")) == {b"a": b"1"}
    # a job given back frees the slot and gives the turn back (lib/limits.lua lim_release,
    # which leaves the mark): the next fetch that serves a drops it
    f = first[0]
    back = Settle(f.id, "sms", "requeue", keys.queue("sms"), 1, 1, token=f.token, history=False)
    assert await scripts.settle("p", back) is True
    assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"a"]
    second = await _fetch(scripts, 1, "c=1")
    assert len(second) == 1
    assert await redis.exists(keys.partitions_busy("sms")) == 0
    await assert_invariants(redis, namespace)


async def test_an_ack_meeting_a_busy_key_of_another_type_acknowledges_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = await _setup(redis, namespace, "ab")
    got = await _fetch(scripts, 2, "c=1")
    await redis.set(keys.partitions_busy("sms"), "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await scripts.ack("p", _acked(got), False, 1, False)
    assert await redis.zcard(keys.in_progress("p")) == 2
    assert await redis.hgetall(keys.partitions_running("sms")) == {b"a": b"1", b"b": b"1"}
