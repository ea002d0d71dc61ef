"""A dead pool whose reap a script refuses (a key of another type: lua/reap.lua refuses by name
before writing anything) does not hold back the other dead pools: the reaper logs it and reaps
the rest. Dead pools are visited oldest first, so before, every pool after it stayed unreaped on
every pass until the key was repaired (found in review)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from errands import Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper


async def _run_of_another_type(redis: Redis, keys: Keys, job_id: str) -> str:
    """dead1's job made a member of run r1, whose key holds another type: reap.lua refuses the
    pool's reap (a job name's own key of another type only leaves that name's entries alone:
    tests/worker/test_reap_name_keys.py); returns that key."""
    await redis.hset(keys.workflow_of, job_id, "r1")  # type: ignore[misc]
    await redis.set(keys.workflow("r1"), "not a run")
    return keys.workflow("r1")


async def test_a_refused_reap_leaves_the_other_dead_pools_reaped(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        bad, good = await enq.enqueue("bad"), await enq.enqueue("good")
    assert bad is not None and good is not None
    for pool, name in (("dead1", "bad"), ("dead2", "good")):
        await scripts.heartbeat(pool, b"{}", 60_000, mode="register")
        fetched = await scripts.fetch(pool, 0, 10, [(name, 0)])
        assert fetched is not None and len(fetched) == 1
    await redis.zadd(keys.pools, {"dead1": 1, "dead2": 2})  # (beats long ago: dead1 first)
    wrong = await _run_of_another_type(redis, keys, bad.id)
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.ERROR, logger="errands"):
        assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("good"), good.id) is not None
    assert await redis.zcard(keys.in_progress("dead2")) == 0
    assert await redis.zcard(keys.in_progress("dead1")) == 1  # (left as it was: refused)
    assert "pool dead1 not reaped" in caplog.text and wrong in caplog.text


async def test_a_recovery_count_that_is_not_a_number_is_counted_anew(
    redis: Redis, namespace: str
) -> None:
    """A dead pool's job whose count of take-backs was written by hand as a non-number goes back
    to its queue with a count of 1. reap.lua's HINCRBY raised after the job had left the pool's
    in-progress set: neither in progress nor queued, the job was lost."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    job = await Enqueuer(redis, namespace=namespace, strict=None).enqueue("work")
    assert job is not None
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("dead", 0, 10, [("work", 0)])
    assert fetched is not None and len(fetched) == 1
    await redis.hset(keys.recoveries, job.id, "many")
    await redis.zadd(keys.pools, {"dead": 1})
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("work"), job.id) is not None
    assert await redis.hget(keys.recoveries, job.id) == b"1"


async def _refused_pool(redis: Redis, scripts: Scripts) -> None:
    """Pool dead1 ran a job of `bad` and died; the key of its job's workflow run is of another
    type: its reap is refused."""
    async with Enqueuer(redis, namespace=scripts.keys.namespace, strict=None) as enq:
        assert await enq.enqueue("bad") is not None
    await scripts.heartbeat("dead1", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("dead1", 0, 10, [("bad", 0)])
    assert fetched is not None and len(fetched) == 1
    await redis.zadd(scripts.keys.pools, {"dead1": 1})
    await _run_of_another_type(redis, scripts.keys, fetched[0].id)


async def test_a_refused_pool_not_listed_is_not_said_to_be_no_longer_refused(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused pool a pass does not list (held: its score in `retired` set ahead, as a call of
    an older reaper that left an entry alone did) is not judged by that pass; it is said to be
    no longer refused once a pass reaps it. (Every refused pool was judged each pass: "no longer
    refused", then refused again one dead timeout later.)"""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _refused_pool(redis, scripts)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    no_longer = "pool dead1 is no longer refused"
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0
        assert "pool dead1 not reaped" in caplog.text
        ahead = (int((await redis.time())[0]) + 60) * 1000
        await redis.zrem(keys.pools, "dead1")
        await redis.zadd(keys.retired, {"dead1": ahead})  # (held: not listed)
        assert await reaper.reap_once() == 0
        assert no_longer not in caplog.text
        await redis.zadd(keys.retired, {"dead1": 1})  # (listed again: refused still)
        assert await reaper.reap_once() == 0
        assert no_longer not in caplog.text and caplog.text.count("pool dead1 not reaped") == 1
        await redis.delete(keys.workflow("r1"), keys.workflow_of)  # (repaired)
        assert await reaper.reap_once() == 1
        assert no_longer in caplog.text


async def test_a_refused_pool_gone_or_alive_is_no_longer_refused(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused pool no pass lists since it is no dead pool any more (alive: it beat again; or
    gone: another reaper took its jobs back) is said to be no longer refused."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _refused_pool(redis, scripts)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0
        await scripts.heartbeat("dead1", b"{}", 60_000)  # (alive)
        assert await reaper.reap_once() == 0
    assert "pool dead1 is no longer refused" in caplog.text


async def test_a_refused_pool_gone_is_no_longer_refused(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused pool neither retired nor registered (gone: another reaper took its jobs back
    once the key was repaired) is said to be no longer refused by the next pass."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _refused_pool(redis, scripts)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0
        assert "pool dead1 not reaped" in caplog.text
        await redis.zrem(keys.pools, "dead1")  # (gone: in neither)
        await redis.zrem(keys.retired, "dead1")
        await redis.delete(keys.in_progress("dead1"))
        assert await reaper.reap_once() == 0
    assert "pool dead1 is no longer refused" in caplog.text


async def test_a_redis_error_judging_refused_pools_not_listed_ends_no_pass(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading whether refused pools not listed are still dead only feeds a log line: a Redis
    error there judges none, and the pass still logs the pools it was refused. (It propagated
    from reap_once: the pass's refusals and the names it left alone were never logged.)"""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _refused_pool(redis, scripts)
    await scripts.heartbeat("dead2", b"{}", 60_000, mode="register")
    await redis.zadd(keys.in_progress("dead2"), {"j2:bad": 1})  # (refused as dead1 is:
    await redis.hset(keys.workflow_of, "j2", "r1")  # type: ignore[misc]  # a member of r1)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0  # (dead1 refused; dead2 alive)
        ahead = (int((await redis.time())[0]) + 60) * 1000
        await redis.zrem(keys.pools, "dead1")
        await redis.zadd(keys.retired, {"dead1": ahead})  # (held: not listed, so judged)
        await redis.zadd(keys.pools, {"dead2": 1})  # (dead now)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("lost")

        monkeypatch.setattr(redis, "pipeline", broken)
        assert await reaper.reap_once() == 0
    assert "pool dead1 not reaped" in caplog.text and "pool dead2 not reaped" in caplog.text


async def test_a_key_of_another_type_judging_refused_pools_is_logged_once(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retired` of another type when the pass reads whether refused pools not listed are still
    dead (made a string by hand between dead_pools.lua and that read, twice): WRONGTYPE, a
    ResponseError, judges none, logged once naming the keys; the passes end as usual. (It
    propagated from reap_once: the pass's refusals and the names it left alone were not logged,
    and the reaper's loop logged "reaper pass failed" with a traceback each pass.)"""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await _refused_pool(redis, scripts)
    reaper = Reaper(scripts, SystemClock(), "me", None, 60.0, 1.0, max_recoveries=3)
    listed = scripts.dead_pools

    async def corrupting(*args: Any, **kwargs: Any) -> list[str]:
        dead = await listed(*args, **kwargs)
        await redis.delete(keys.retired)
        await redis.set(keys.retired, "not a sorted set")
        return dead

    with caplog.at_level(logging.WARNING, logger="errands"):
        assert await reaper.reap_once() == 0  # (dead1 refused)
        monkeypatch.setattr(scripts, "dead_pools", corrupting)
        ahead = (int((await redis.time())[0]) + 60) * 1000
        await redis.zrem(keys.pools, "dead1")
        for _ in range(2):
            await redis.delete(keys.retired)
            await redis.zadd(keys.retired, {"dead1": ahead})  # (held: not listed, so judged)
            assert await reaper.reap_once() == 0
    said = [r.getMessage() for r in caplog.records if "not judged until" in r.getMessage()]
    assert len(said) == 1 and "WRONGTYPE" in said[0] and keys.retired in said[0], said
    assert "pool dead1 is no longer refused" not in caplog.text
