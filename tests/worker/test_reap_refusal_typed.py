"""The reaper tells reap.lua's refusals (nothing written: the other dead pools are reaped) from
other errors (Redis' own: they end the pass) by type, not by wording: reap.lua answers a refusal
with its reason as a string, which store/reapcall.py raises as ReapRefused. The reaper matched
"nothing reaped" in the error's text, so a change of a message (lib/types.lua's are shared by
every script) turned a refusal into an error that stopped every pass at that pool."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import ReapRefused
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper


async def _two_dead_pools(redis: Redis, namespace: str) -> tuple[Scripts, str]:
    """Pools dead1 (first) and dead2, a job of each in progress; returns dead2's job id."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("bad")
        good = await enq.enqueue("good")
    assert good is not None
    for pool, name in (("dead1", "bad"), ("dead2", "good")):
        await scripts.heartbeat(pool, b"{}", 60_000, mode="register")
        fetched = await scripts.fetch(pool, 0, 10, [(name, 0)])
        assert fetched is not None and len(fetched) == 1
    await redis.zadd(keys.pools, {"dead1": 1, "dead2": 2})
    return scripts, good.id


async def test_a_refusal_is_typed_and_writes_nothing(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts, _ = await _two_dead_pools(redis, namespace)
    await redis.set(keys.priorities, "not a hash")  # (a shared key: refuses the call)
    members = [(b"x:bad", "x", "bad")]
    with pytest.raises(ReapRefused, match=f"^WRONGTYPE {keys.priorities} .*nothing reaped$"):
        await scripts.reap("dead1", 1000, 3, b'"e"', b'"m"', members)
    with pytest.raises(ReapRefused, match=r"^errands: reap: bad dead timeout"):
        await scripts.reap("dead1", "1.5", 3, b'"e"', b'"m"', members)  # type: ignore[arg-type]
    assert await redis.zscore(keys.pools, "dead1") == 1


@pytest.mark.parametrize("wording", ["changed wording", "WRONGTYPE q holds another type"])
async def test_a_refusal_in_any_wording_leaves_the_other_pools_reaped(
    redis: Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    wording: str,
) -> None:
    keys = Keys(namespace)
    scripts, good = await _two_dead_pools(redis, namespace)
    reap = scripts.reap

    async def refusing(pool_id: str, *args: Any, **kwargs: Any) -> Any:
        if pool_id == "dead1":
            raise ReapRefused(wording)
        return await reap(pool_id, *args, **kwargs)

    monkeypatch.setattr(scripts, "reap", refusing)
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.ERROR, logger="errands"):
        assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("good"), good) is not None
    assert f"pool dead1 not reaped: {wording}" in caplog.text


async def test_another_error_ends_the_pass_whatever_it_says(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis error that is no refusal (one that only quotes "nothing reaped") ends the pass."""
    scripts, _ = await _two_dead_pools(redis, namespace)

    async def failing(pool_id: str, *args: Any, **kwargs: Any) -> Any:
        raise ResponseError("OOM command not allowed: nothing reaped")

    monkeypatch.setattr(scripts, "reap", failing)
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with pytest.raises(ResponseError, match="OOM"):
        await reaper.reap_once()


async def test_a_wrong_typed_dedup_of_job_is_a_refusal_naming_it(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the reaper's read of dedup_of_job (for a malformed entry's dedup name) meets a key of
    # another type: it passes no name and reap.lua refuses each pool naming the key (it checks
    # that key for every pool, as before), instead of the pass ending on a bare WRONGTYPE
    keys = Keys(namespace)
    scripts, _ = await _two_dead_pools(redis, namespace)
    await redis.zadd(keys.in_progress("dead1"), {b"xyz:bad name": 1})
    await redis.set(keys.dedup_of_job, "not a hash")
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    with caplog.at_level(logging.ERROR, "errands.reaper"):
        await reaper.reap_once()
    refusals = [r.getMessage() for r in caplog.records if "not reaped" in r.getMessage()]
    assert len(refusals) == 2 and all(keys.dedup_of_job in m for m in refusals)
    assert not [r for r in caplog.records if "pass failed" in r.getMessage()]
    assert await redis.zscore(keys.pools, "dead1") == 1  # left for a later pass
