"""A fetch that fills its name's max_concurrency answers no rate wait for it: nothing of the name
starts before one of its jobs ends, and that job's ack wakes the idle pools. A partition found
rate-limited on the way (its free noted) woke the pool at its free for a fetch that took nothing,
the cap being full still. A pool is modelled here, on the scripts alone: it fetches again when
the reply's wait passes, and at an ack (none comes while the job taken runs)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands.store.keys import Keys
from errands.store.records import FetchResult
from errands.store.scripts import Acked
from tests.support.invariants import assert_invariants
from tests.support.ready import ready_to_fetch

SPEC = "R=1/60000"  # one start a minute per partition


async def _redis_ms(redis: Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


@pytest.mark.parametrize("cap", [1, 2], ids=["filled", "room-left"])
async def test_a_fetch_filling_the_cap_wakes_no_pool_for_an_empty_fetch(
    redis: Redis, namespace: str, cap: int
) -> None:
    keys = Keys(namespace)
    jobs = [("sms", {}, {"partition": "a"}), ("sms", {}, {"partition": "b"})]
    scripts = await ready_to_fetch(redis, namespace, jobs)
    # a started a job 60 s - 50 ms ago: its rate frees in about 50 ms
    now = await _redis_ms(redis)
    await redis.hset(keys.rate_log("sms"), "60000:a", f"#{0:010d}{now - 59_950:013d}{1:010d}")

    async def fetch() -> FetchResult:
        got = await scripts.fetch("p", 1, 10, [("sms", cap)], specs={"sms": SPEC})
        assert got is not None
        return got

    got = await fetch()  # a's turn first: rate-limited; b's job taken
    assert len(got) == 1 and b'"b"' in got[0].envelope
    running = got[0]
    empty = taken = 0
    while got.wait is not None and empty + taken < 3:  # the pool sleeps until the wait passes
        await asyncio.sleep(got.wait)
        got = await fetch()
        taken += len(got)
        empty += not got
    assert empty == 0  # (was 1 with the cap filled: the wake-up at a's free took nothing)
    assert taken == cap - 1  # with room left, a's job at its free
    acked = Acked(running.id, "sms", b"null", 1, 0, 1, running.token)
    assert await scripts.ack("p", [acked], True, 1, False) == []
    if cap == 1:  # the ack frees the slot (and wakes idle pools): a's job is taken
        got = await fetch()
        while not got and got.wait is not None:
            await asyncio.sleep(got.wait)
            got = await fetch()
        assert len(got) == 1 and b'"a"' in got[0].envelope
    await assert_invariants(redis, namespace)
