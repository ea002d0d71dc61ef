"""A rate log keeps one record per fetch that started jobs (a time and a running count), not one
time per start; an older errands' log (one time per start) still counts, and is rewritten."""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from errands import Rate
from errands.admin.limitsinfo import waiting_reason
from errands.store.keys import Keys
from tests.support.ready import ready_to_fetch

SPEC = {"sms": "r=4/60000"}
RATE = (Rate(4, per=timedelta(minutes=1)),)


async def _now(redis: Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000


async def test_a_fetch_writes_one_record_whatever_it_started(redis: Redis, namespace: str) -> None:
    """A fetch of n jobs appended n start times (13 bytes each, rewritten whole on every
    fetch): the log grew with the starts of its window."""
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 8)
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs={"sms": "r=100/60000"})
    assert len(got) == 8
    log = await redis.hget(keys.rate_log("sms"), "60000")
    assert log is not None and log.startswith(b"#0000000000") and len(log) == 1 + 10 + 23
    assert log.endswith(b"0000000008")  # 8 starts counted up to that record
    reason = await waiting_reason(redis, keys, "sms", None, RATE)
    assert reason is not None and reason.startswith("rate limited until")  # 8 >= 4


async def test_an_older_log_still_counts_and_is_rewritten(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts = await ready_to_fetch(redis, namespace, [("sms", {})] * 8)
    now = await _now(redis)
    # one start out of the window; three in a bucket (of 60 ms) before now's: their record stays
    old = f"{now - 120_000:013d}" + f"{now - 130:013d}" * 3
    await redis.hset(keys.rate_log("sms"), "60000", old)
    assert await waiting_reason(redis, keys, "sms", None, RATE) is None  # 3 of 4 in the window
    got = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=SPEC)
    assert len(got) == 1  # the 4th start
    log = await redis.hget(keys.rate_log("sms"), "60000")
    assert log is not None and log.startswith(b"#0000000001")  # the start out of the window
    assert log.endswith(b"0000000005") and len(log) == 1 + 10 + 2 * 23
    again = await scripts.fetch("p", 1, 8, [("sms", 0)], specs=SPEC)
    assert len(again) == 0 and again.wait is not None and 59.0 < again.wait <= 60.001
    reason = await waiting_reason(redis, keys, "sms", None, RATE)
    assert reason is not None and reason.startswith("rate limited until")
    await redis.hset(keys.rate_log("sms"), "60000", f"{now - 10:013d}" * 4)
    assert await waiting_reason(redis, keys, "sms", None, RATE) is not None  # an older log, full
