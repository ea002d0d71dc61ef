"""Activity counters (store/metrics.py) written by the pools and the Activity page: attempts
done, failed and dead per minute and per hour, waits per job name, bounded by TTLs; charts as
inline SVG."""

from __future__ import annotations

import collections
import re

import pytest
from redis.asyncio import Redis

import errands
from errands import Client, Enqueuer
from errands.store.keys import Keys
from errands.store.metrics import HOUR_TTL, MINUTE_TTL, Counters
from tests.support.dashboard import eventually, http, make_pool
from tests.support.invariants import assert_invariants


async def _dead(client: Client) -> bool:
    return (await client.dead_jobs()).total == 1


async def _retrying(client: Client) -> bool:
    return (await client.retry_jobs()).total == 1


async def test_pools_count_activity_and_the_page_draws_it(redis_url: str, namespace: str) -> None:
    pool = make_pool(redis_url, namespace)
    async with Client.from_url(redis_url, namespace=namespace) as client:
        async with pool, Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
            oks = [await enqueuer.enqueue("ok", {"n": i}) for i in range(3)]
            for job in oks:
                assert await client.result(job.id, timeout=10) == 42
            await enqueuer.enqueue("boom", {})
            await enqueuer.enqueue("flaky", {})
            await eventually(lambda: _dead(client), "the boom job to die")
            await eventually(lambda: _retrying(client), "the flaky job to wait for its retry")
            pool.release_slow.set()  # type: ignore[attr-defined]
        # the pool added its counts when it stopped
        for span, size in (("hour", 60), ("day", 24), ("week", 168)):
            buckets = await client.activity(span)
            assert len(buckets) == size
            assert sum(b.done for b in buckets) == 3, span
            assert sum(b.failed for b in buckets) == 1 and sum(b.dead for b in buckets) == 1
            assert sum(b.waits["ok"][1] for b in buckets if "ok" in b.waits) == 3
        keys = Keys(namespace)
        minute = int(buckets[-1].start)
        ttl = await client.redis.ttl(keys.metrics_hour(minute))
        assert HOUR_TTL - 60 < ttl <= HOUR_TTL
        minutes = [k async for k in client.redis.scan_iter(match=keys.prefix + "metrics:m:*")]
        ttls = [await client.redis.ttl(k) for k in minutes]
        assert ttls and all(MINUTE_TTL - 60 < t <= MINUTE_TTL for t in ttls)
        await assert_invariants(client.redis, namespace)
        async with http(errands.dashboard(client)) as web:
            page = (await web.get("/activity")).text
            assert 'id="activity-chart"' in page and "3 done, 1 failed, 1 died" in page
            assert len(re.findall(r'<rect class="bar', page)) >= 2
            assert 'data-queue="ok"' in page and 'class="spark"' in page
            week = (await web.get("/api/activity?span=week")).json()
            assert len(week["buckets"]) == 168 and week["chart"]["done"] == 3
            assert (await web.get("/activity?span=year")).status_code == 400
    with pytest.raises(ValueError):
        await client.activity("year")


async def test_counts_survive_an_unreachable_redis(redis_url: str, namespace: str) -> None:
    counters = Counters()
    counters.ended("done", 1_767_225_600.0)
    counters.started("ok", 1.5, 1_767_225_600.0)
    keys = Keys(namespace)
    down = Redis.from_url("redis://127.0.0.1:1/0")
    await counters.flush_quietly(down, keys, 2.0)
    await down.aclose()
    assert counters.pending  # kept for the next flush
    up = Redis.from_url(redis_url)
    await counters.flush(up, keys)
    assert not counters.pending
    assert await up.hgetall(keys.metrics_minute(1_767_225_600)) == {
        b"done": b"1",
        b"wait:ok": b"1500",
        b"started:ok": b"1",
    }
    # a later minute of the same hour: the hour's bucket holds the sum of its minutes'
    counters.ended("done", 1_767_225_600.0 + 61)
    counters.started("ok", 0.25, 1_767_225_600.0 + 61)
    await counters.flush(up, keys)
    assert await up.hgetall(keys.metrics_hour(1_767_225_600)) == {
        b"done": b"2",
        b"wait:ok": b"1750",
        b"started:ok": b"2",
    }
    assert 0 < await up.pttl(keys.metrics_hour(1_767_225_600)) <= HOUR_TTL * 1000
    assert 0 < await up.pttl(keys.metrics_minute(1_767_225_660)) <= MINUTE_TTL * 1000
    await up.delete(keys.metrics_minute(1_767_225_600), keys.metrics_hour(1_767_225_600))
    await up.delete(keys.metrics_minute(1_767_225_660))
    await up.aclose()


@pytest.mark.parametrize(
    "times",
    [
        [1_767_225_599.9, 1_767_225_600.0, 1_767_225_659.999, 1_767_225_660.0, 1_767_225_600.5],
        [-90.0, -60.5, -30.5, -0.5, 0.0, 59.5, -30.0],  # int() rounds toward 0 below 0
    ],
)
def test_a_count_falls_in_its_minute(times: list[float]) -> None:
    """The cached minute's bounds put each count where int(at) // 60 * 60 says."""
    counters = Counters()
    for at in times:
        counters.ended("done", at)
        counters.started("ok", 0.0, at)
    want = collections.Counter(int(at) // 60 * 60 for at in times)
    assert {m: b["done"] for m, b in counters.pending.items() if b["done"]} == want
    assert {m: b["started:ok"] for m, b in counters.pending.items() if b["started:ok"]} == want
