"""A job name whose `running` count is not a counter (written by hand: 'abc', '1.5') holds no
other name: fetch.lua skips it (none of its jobs fetched, nothing of it written, the pool not
marked idle for it) and says so in its reply, serving the other names of the call; ack.lua
leaves its jobs alone as unfit and acknowledges the others. Once the count is repaired, its
jobs are fetched and acknowledged. (Both calls failed as a whole: one corrupt name stopped a
pool from fetching any job, and the acknowledgements of every job of the batch.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.resend import snapshot

QUEUES = [("sms", 0), ("mail", 0)]  # (sms tried first)
JOBS = [("sms", "s1"), ("sms", "s2"), ("mail", "m1"), ("mail", "m2")]


async def _two_names(redis: Redis, keys: Keys) -> Scripts:
    """Jobs s1, s2 of sms and m1, m2 of mail, queued; pool p registered."""
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enqueuer:
        jobs = [(name, {}, {"job_id": i}) for name, i in JOBS]
        await enqueuer.enqueue_many(jobs)  # type: ignore[arg-type]
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    return scripts


@pytest.mark.parametrize(("value", "cap"), [("abc", 0), ("1.5", 5), ("9" * 17, 0)])
async def test_a_fetch_skips_a_name_whose_count_is_not_one_and_serves_the_others(
    redis: Redis, namespace: str, value: str, cap: int
) -> None:
    keys = Keys(namespace)
    scripts = await _two_names(redis, keys)
    await redis.zadd(keys.idle_for("sms"), {"p": -(10**15)})  # (a mark of p from before)
    await redis.hset(keys.running, "sms", value)  # type: ignore[misc]
    queues = [("sms", cap), ("mail", cap)]
    got = await scripts.fetch("p", 1, 10, queues)
    assert got is not None and sorted(f.id for f in got) == ["m1", "m2"]
    assert got.skipped == {"sms": value}
    assert await redis.zcard(keys.queue("sms")) == 2
    assert await redis.hget(keys.running, "sms") == value.encode()
    assert await redis.hget(keys.running, "mail") == b"2"
    assert await redis.hmget(keys.attempts, ["s1", "s2"]) == [None, None]
    # idle (fewer than asked for): marked for mail, not for sms (its mark gone: an enqueue of
    # sms wakes no pool that cannot serve it)
    assert await redis.zscore(keys.idle_for("mail"), "p") is not None
    assert await redis.zscore(keys.idle_for("sms"), "p") is None
    await redis.hset(keys.running, "sms", 0)  # type: ignore[misc]  # repaired
    got = await scripts.fetch("p", 1, 10, queues)
    assert got is not None and sorted(f.id for f in got) == ["s1", "s2"]
    assert got.skipped == {}
    assert await redis.hget(keys.running, "sms") == b"2"


async def test_a_full_fetch_wakes_no_idle_pool_of_a_skipped_name(
    redis: Redis, namespace: str
) -> None:
    """A fetch that got all it asked for wakes one idle pool of the first name whose queue holds
    jobs: not of a skipped one (its pool would fetch nothing of it)."""
    keys = Keys(namespace)
    scripts = await _two_names(redis, keys)
    await redis.sadd(keys.idle, "q")  # type: ignore[misc]
    await redis.zadd(keys.idle_for("sms"), {"q": -(10**15)})
    await redis.hset(keys.running, "sms", "abc")  # type: ignore[misc]
    got = await scripts.fetch("p", 1, 1, QUEUES)
    assert got is not None and [f.id for f in got] == ["m1"] and got.skipped == {"sms": "abc"}
    assert await redis.zscore(keys.idle_for("sms"), "q") is not None  # (not popped: not woken)


@pytest.mark.parametrize("value", ["abc", "9" * 17])
async def test_an_ack_leaves_the_jobs_of_a_name_whose_count_is_not_one_alone(
    redis: Redis, namespace: str, value: str
) -> None:
    keys = Keys(namespace)
    scripts = await _two_names(redis, keys)
    got = await scripts.fetch("p", 1, 10, QUEUES)
    assert got is not None and len(got) == 4
    name = {"s1": "sms", "s2": "sms", "m1": "mail", "m2": "mail"}
    done = [Acked(f.id, name[f.id], b"1", 1, 60_000, 1, f.token) for f in got]
    await redis.hset(keys.running, "sms", value)  # type: ignore[misc]
    for _ in range(2):  # the second: a re-send of the first
        report = await scripts.ack_report("p", done, False, 2, True)
        assert (sorted(report.unfit), report.refused) == (["s1", "s2"], [])
        assert await redis.zrange(keys.in_progress("p"), 0, -1) == [b"s1:sms", b"s2:sms"]
        assert await redis.hget(keys.running, "sms") == value.encode()
        assert await redis.hget(keys.running, "mail") == b"0"
        assert None not in await redis.hmget(keys.attempts, ["s1", "s2"])
        assert await redis.hget(keys.attempts, "m1") is None
        assert await redis.hget(keys.stats, "processed") == b"2"
    sms = [a for a in done if a.name == "sms"]
    before = await snapshot(redis, namespace)
    report = await scripts.ack_report("p", sms, False, 2, True)  # only its jobs: nothing written
    assert (sorted(report.unfit), report.refused) == (["s1", "s2"], [])
    assert await snapshot(redis, namespace) == before
    await redis.hset(keys.running, "sms", 2)  # type: ignore[misc]  # repaired
    report = await scripts.ack_report("p", sms, False, 2, True)
    assert (report.unfit, report.refused) == ([], [])
    assert await redis.zcard(keys.in_progress("p")) == 0
    assert await redis.hget(keys.running, "sms") == b"0"
    assert await redis.hget(keys.stats, "processed") == b"4"
