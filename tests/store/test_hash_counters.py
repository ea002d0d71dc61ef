"""A hash field that settle.lua or ack.lua HINCRBYs after its first write (running[name], a
partition's running count) is checked before it (lib/types.lua's not_hash_counter): one that
holds anything but an integer refuses the settle with nothing written, or, in an ack, leaves that
job alone (reported unfit) and acks the others (a `running` count in a fetch or an ack:
tests/store/test_running_skipped.py). (The call raised half-way: the job in no queue nor
in-progress set, its attempt recorded: stuck for ever.) A stats counter is checked too, but
replaced by the call's count instead of refusing it (a statistic never stops the work it counts:
tests/store/test_stats_repair.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Fetched, Scripts, Settle
from tests.support.resend import snapshot

SPEC = {"sms": "c=5"}


async def _fetched(redis: Redis, keys: Keys, partition: str | None = None) -> list[Fetched]:
    """Job ``one`` (with ``partition``) and ``two`` (without) of ``sms``, fetched by pool p."""
    opts: dict[str, object] = {"job_id": "one"}
    if partition:
        opts["partition"] = partition
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("sms", {}, opts), ("sms", {}, {"job_id": "two"})])  # type: ignore[list-item]
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", 1, 2, [("sms", 0)], specs=SPEC if partition else None)
    assert got is not None and sorted(f.id for f in got) == ["one", "two"]
    return sorted(got, key=lambda f: f.id)


def _requeue(keys: Keys, item: Fetched) -> Settle:
    s = Settle(item.id, "sms", "requeue", keys.queue("sms"), 1, 1, history=False)
    s.token, s.score_ms = item.token, item.score
    return s


async def test_settle_with_a_counter_that_is_not_one_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    one, _two = await _fetched(redis, keys)
    await redis.hset(keys.running, "sms", "x")  # type: ignore[misc]
    s = _requeue(keys, one)
    s.counter = "retried"
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="not a counter: nothing settled"):
        await Scripts(redis, keys).settle("p", s)
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("field", ["cancelled", "retried"])
async def test_settle_with_a_stats_counter_that_is_not_one_replaces_it(
    redis: Redis, namespace: str, field: str
) -> None:
    """Its stats counter (here `retried`) is replaced by the settle's count; `cancelled`, read
    too (a cancel request turns a settle into cancelled), is left as it is when not counted."""
    keys = Keys(namespace)
    one, _two = await _fetched(redis, keys)
    await redis.hset(keys.stats, field, "x")  # type: ignore[misc]
    s = _requeue(keys, one)
    s.counter = "retried"
    assert await Scripts(redis, keys).settle("p", s) is True
    assert await redis.zscore(keys.queue("sms"), "one") is not None
    want = {b"retried": b"1"} if field == "retried" else {b"retried": b"1", b"cancelled": b"x"}
    assert await redis.hgetall(keys.stats) == want


async def test_settle_with_a_partition_count_that_is_not_one_changes_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    one, _two = await _fetched(redis, keys, partition="a")
    await redis.hset(keys.partitions_running("sms"), "a", "1.5")  # type: ignore[misc]
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="not a counter: nothing settled"):
        await Scripts(redis, keys).settle_many("p", [_requeue(keys, one)] * 2)
    assert await snapshot(redis, namespace) == before


async def test_ack_with_a_processed_that_is_not_one_replaces_it(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    got = await _fetched(redis, keys)
    await redis.hset(keys.stats, "processed", "1e3")  # type: ignore[misc]
    done = [Acked(f.id, "sms", b"1", 1, 60_000, 1, f.token) for f in got]
    assert await Scripts(redis, keys).ack("p", done, False, 2, True) == []
    assert await redis.hget(keys.stats, "processed") == b"2"
    assert await redis.zcard(keys.in_progress("p")) == 0


async def test_an_ack_leaves_a_job_whose_partition_count_is_not_one_alone(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    got = await _fetched(redis, keys, partition="a")
    await redis.hset(keys.partitions_running("sms"), "a", "x")  # type: ignore[misc]
    done = [Acked(f.id, "sms", b"1", 1, 60_000, 1, f.token) for f in got]
    report = await Scripts(redis, keys).ack_report("p", done, False, 2, True)
    assert (report.unfit, report.refused) == (["one"], [])
    assert await redis.zrange(keys.in_progress("p"), 0, -1) == [b"one:sms"]
    assert await redis.hget(keys.running, "sms") == b"1"
