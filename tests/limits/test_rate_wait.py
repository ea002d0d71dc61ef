"""A fetch that fills a type-wide rate by the jobs it takes (room before it, none after) answers
when the window frees, as one that finds the rate full does: the pool sleeps until then, not a
whole `poll_interval`."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, Rate, WorkerPool
from errands.limits import compile_limits
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants
from tests.support.ready import ready_to_fetch

from .support import until


async def test_a_fetch_that_fills_a_rate_says_when_it_frees(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    starts: list[float] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace, poll_interval=5.0)

    @pool.job("sms", limits=[Rate(2, per=timedelta(milliseconds=300))])
    async def sms(job: Job) -> None:
        starts.append(time.monotonic())

    async with Enqueuer(redis, namespace=namespace) as enqueuer, pool:
        await enqueuer.enqueue("sms", {})
        await until(lambda: len(starts) == 1)
        # one start left in the window: the fetch the enqueue wakes takes one job and fills it
        await enqueuer.enqueue_many([("sms", {}) for _ in range(3)])
        await until(lambda: len(starts) == 4, timeout=10)
    # the third start waits for the first to leave the window (300 ms), the fourth for the
    # second: well within a second, where a pool not told when sleeps its 5 s poll interval
    assert starts[2] - starts[0] >= 0.3 - 0.03
    assert starts[3] - starts[0] < 1.5, [round(t - starts[0], 3) for t in starts]
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def _redis_ms(redis: Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


@pytest.mark.parametrize("taken", [0, 1], ids=["found-full", "filled"])
@pytest.mark.parametrize("ago", [(200, 30_000), (800, 59_900)], ids=["long-last", "short-last"])
async def test_two_rates_on_a_name_wait_for_the_later_to_free(
    redis: Redis, namespace: str, taken: int, ago: tuple[int, int]
) -> None:
    """Rate(5, per=1 s) and Rate(20, per=60 s) on one name, both full (as the fetch finds them,
    or as its one start leaves them): the fetch's wait is until both allow a start, the later of
    the two windows' frees, whichever frees last. The earlier one woke the pool for a fetch
    that took nothing (up to 30 s early, then at each free of the short window)."""
    rates = [Rate(5, per=timedelta(seconds=1)), Rate(20, per=timedelta(seconds=60))]
    _conc, spec = compile_limits(rates)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 3)
    now = await _redis_ms(redis)
    starts = {"1000": (5 - taken, ago[0]), "60000": (20 - taken, ago[1])}
    log = Keys(namespace).rate_log("sms")
    for per, (count, before) in starts.items():  # count starts at now - before
        await redis.hset(log, per, f"#{0:010d}{now - before:013d}{count:010d}")
    await redis.pexpire(log, 61_000)  # (as a fetch's starts leave it: its TTL checked)
    got = await scripts.fetch("p", 1, 3, [("sms", 0)], specs={"sms": spec})
    after = await _redis_ms(redis)
    assert len(got) == taken and got.wait is not None
    free = max(now - ago[0] + 1_000, now - ago[1] + 60_000) + 1  # (the later window's free)
    assert (free - after) / 1000 - 0.002 <= got.wait <= (free - now) / 1000 + 0.002, got.wait
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("type_wide", [2, 3], ids=["filled", "room-left"])
async def test_a_partition_freeing_before_the_full_type_wide_rate_does_not_wake_the_pool(
    redis: Redis, namespace: str, type_wide: int
) -> None:
    """Rate(n, per=60 s) on the type and Rate(1, per=100 ms) per partition: the second fetch
    finds partition a rate-limited (its first start 100 ms ago at most) and takes the job
    without a partition. When that start fills the type-wide rate (n = 2), nothing of the
    name starts before the type's window frees (~60 s): the wait says so. It said a's free
    (100 ms): the pool woke for a fetch that took nothing. With room left (n = 3), a's free."""
    rates = [
        Rate(type_wide, per=timedelta(seconds=60)),
        Rate(1, per=timedelta(milliseconds=100), per_partition=True),
    ]
    _conc, spec = compile_limits(rates)
    jobs = [("sms", {}, {"partition": "a"})] * 3 + [("sms", {}, {})]
    scripts = await ready_to_fetch(redis, namespace, jobs)
    first = await scripts.fetch("p", 1, 1, [("sms", 0)], specs={"sms": spec})
    assert first is not None and len(first) == 1
    got = await scripts.fetch("p", 1, 2, [("sms", 0)], specs={"sms": spec})
    assert got is not None and len(got) == 1 and b'"k"' not in got[0].envelope  # (unpartitioned)
    assert got.wait is not None
    if type_wide == 2:
        assert 59.5 <= got.wait <= 60.01, got.wait
    else:
        assert got.wait <= 0.11, got.wait
    await assert_invariants(redis, namespace)
