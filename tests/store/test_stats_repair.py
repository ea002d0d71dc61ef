"""A stats field (processed, failed, dead, cancelled, retried, ...) that is not a counter (written
by hand, a bad restore) never stops the work it counts: ack.lua, settle.lua and reap.lua replace
it with the call's count (its old value, not a number, is lost) and do their work. They refused
the whole call before (lib/types.lua's not_hash_counter): no job of any pool was acknowledged
again, no failed job settled, no dead pool reaped, until the field was repaired by hand. A
re-sent call still counts nothing twice. (The other counters, `running` of a name, seq, a
partition's running count, still refuse: tests/store/test_hash_counters.py.)"""

from __future__ import annotations

import logging
import time

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, Fetched, Scripts, Settle
from errands.worker.reaper import Reaper
from tests.support.resend import snapshot

POOL = "p1"


def _ms() -> int:
    return int(time.time() * 1000)


async def _fetched(redis: Redis, keys: Keys, ids: list[str]) -> list[Fetched]:
    """Jobs `ids` of "walk", fetched by POOL (in the order of `ids`)."""
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        for job_id in ids:
            await enq.enqueue("walk", {}, job_id=job_id)
    got = await scripts.fetch(POOL, _ms(), len(ids), [("walk", 0)])
    assert got is not None and sorted(f.id for f in got) == sorted(ids)
    return sorted(got, key=lambda f: ids.index(f.id))


@pytest.mark.parametrize("value", ["abc", "1e3", "9" * 17, ""])
async def test_an_ack_replaces_a_processed_that_is_not_a_counter(
    redis: Redis, namespace: str, value: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    got = await _fetched(redis, keys, ["a", "b"])
    await redis.hset(keys.stats, mapping={"processed": value, "failed": "7"})
    done = [Acked(f.id, "walk", b"1", 1, 60_000, 1, f.token) for f in got]
    assert await scripts.ack(POOL, done, False, _ms(), True) == []
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.hgetall(keys.stats) == {b"processed": b"2", b"failed": b"7"}
    before = await snapshot(redis, namespace)
    assert await scripts.ack(POOL, done, False, _ms(), True) == []  # a re-send
    assert await snapshot(redis, namespace) == before  # (nothing counted twice)


async def test_an_ack_of_a_destroyed_job_replaces_a_cancelled_that_is_not_a_counter(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    got = await _fetched(redis, keys, ["gone", "kept"])
    async with Client(redis, namespace=namespace) as client:
        assert await client.destroy("gone")
    await redis.hset(keys.stats, mapping={"processed": "x", "cancelled": "many"})
    done = [Acked(f.id, "walk", b"1", 1, 60_000, 1, f.token) for f in got]
    assert await scripts.ack(POOL, done, False, _ms(), True) == []
    assert await redis.hmget(keys.stats, ["processed", "cancelled"]) == [b"1", b"1"]
    assert not await redis.hexists(keys.jobs, "gone")
    before = await snapshot(redis, namespace)
    assert await scripts.ack(POOL, done, False, _ms(), True) == ["gone"]  # a re-send: refused
    assert await snapshot(redis, namespace) == before  # (nothing counted twice)


def _settle(keys: Keys, item: Fetched, mode: str, counter: str) -> Settle:
    target = {"retry": keys.retry("walk"), "dead": keys.dead, "requeue": keys.queue("walk")}[mode]
    s = Settle(item.id, "walk", mode, target, _ms(), 1, history=True, counter=counter)
    s.token, s.error = item.token, b'{"message":"boom"}'
    return s


@pytest.mark.parametrize(
    ("mode", "counter"), [("retry", "failed"), ("dead", "dead"), ("retry", "retried")]
)
async def test_a_settle_replaces_its_counter_that_is_not_one(
    redis: Redis, namespace: str, mode: str, counter: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    (one,) = await _fetched(redis, keys, ["one"])
    await redis.hset(keys.stats, mapping={counter: "oops", "processed": "3"})
    s = _settle(keys, one, mode, counter)
    assert await scripts.settle(POOL, s) is True
    assert await redis.hgetall(keys.stats) == {counter.encode(): b"1", b"processed": b"3"}
    target = keys.retry("walk") if mode == "retry" else keys.dead
    assert await redis.zscore(target, "one") is not None
    before = await snapshot(redis, namespace)
    assert await scripts.settle(POOL, s) is True  # a re-send
    assert await snapshot(redis, namespace) == before  # (nothing counted twice)


async def test_a_settle_cancelled_on_request_replaces_a_cancelled_that_is_not_one(
    redis: Redis, namespace: str
) -> None:
    """A cancel request turns a retry into cancelled: `cancelled` is counted (and repaired)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    (one,) = await _fetched(redis, keys, ["one"])
    async with Client(redis, namespace=namespace) as client:
        await client.cancel("one")
    await redis.hset(keys.stats, mapping={"cancelled": "-", "failed": "-"})
    assert await scripts.settle(POOL, _settle(keys, one, "retry", "failed")) is True
    assert await redis.hgetall(keys.stats) == {b"cancelled": b"1", b"failed": b"-"}
    assert await redis.zscore(keys.cancelled, "one") is not None


async def test_the_jobs_of_a_settle_many_repair_the_counter_once_and_count_on(
    redis: Redis, namespace: str
) -> None:
    """The first job of the call replaces the bad value; the next ones count on from it."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    got = await _fetched(redis, keys, ["a", "b", "c"])
    await redis.hset(keys.stats, "failed", "1.5")
    replies = await scripts.settle_many(POOL, [_settle(keys, f, "retry", "failed") for f in got])
    assert replies == [True, True, True]
    assert await redis.hget(keys.stats, "failed") == b"3"
    assert await redis.zcard(keys.retry("walk")) == 3


@pytest.mark.parametrize("field", ["dead", "cancelled"])
async def test_a_reap_replaces_a_stat_that_is_not_a_counter_and_says_so(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    """A dead pool is reaped (its jobs back on their queue, buried or cancelled) though stats'
    `dead` or `cancelled` is not a counter; the reaper logs one WARNING naming the field."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    got = await _fetched(redis, keys, ["requeued", "buried", "cancelled"])
    assert got
    await redis.hset(keys.recoveries, "buried", "5")  # (taken back too often: buried)
    async with Client(redis, namespace=namespace) as client:
        await client.cancel("cancelled")
    await redis.hset(keys.stats, field, "x")
    await redis.zadd(keys.pools, {POOL: 1})
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 3
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.zscore(keys.queue("walk"), "requeued") is not None
    assert await redis.zscore(keys.dead, "buried") is not None
    assert await redis.zscore(keys.cancelled, "cancelled") is not None
    assert await redis.hmget(keys.stats, ["dead", "cancelled"]) == [b"1", b"1"]
    repaired = [r for r in caplog.records if "not a counter" in r.getMessage()]
    assert len(repaired) == 1 and repaired[0].levelno == logging.WARNING
    assert f"{keys.stats} field {field}" in repaired[0].getMessage()
