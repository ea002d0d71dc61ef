"""A dead pool's malformed in-progress entry whose job holds a dedup key (rerun_latest) with a
rerun waiting for it: the reaper buries the job (or cancels it, when asked) and the rerun goes on
its queue holding the key, as for any other end of its holder. reap.lua freed the key with no
queue to put the rerun on (a malformed entry names no job name): the rerun waited, ownerless,
until the next enqueue of its key, and without one never ran."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper
from tests.support.resend import Recorder, snapshot


async def _holder_and_rerun(redis: Redis, namespace: str) -> tuple[Scripts, str, str]:
    """Job "work" holding key k (rerun_latest) started in pool "dead" with its entry made
    malformed, and a rerun waiting for it; returns (scripts, holder id, rerun id)."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    dedup = Dedup("k", until="finished", rerun_latest=True)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        holder = await enq.enqueue("work", {"n": 1}, dedup=dedup)
        assert holder is not None and holder.dedup is not None
        await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
        fetched = await scripts.fetch("dead", 0, 10, [("work", 0)])
        assert fetched is not None and len(fetched) == 1
        rerun = await enq.enqueue("work", {"n": 2}, dedup=dedup)
    assert rerun is not None and rerun.dedup is not None
    assert rerun.dedup.status == "rerun_queued"
    entry = f"{holder.id}:work".encode()
    score = await redis.zscore(keys.in_progress("dead"), entry)
    assert score is not None
    await redis.zrem(keys.in_progress("dead"), entry)
    await redis.zadd(keys.in_progress("dead"), {f"{holder.id}:bad name".encode(): score})
    await redis.zadd(keys.pools, {"dead": 1})
    return scripts, holder.id, rerun.id


@pytest.mark.parametrize("request_", [None, "cancel", "destroy"])
async def test_the_rerun_of_a_malformed_entrys_job_goes_on_its_queue(
    redis: Redis, namespace: str, request_: str | None
) -> None:
    keys = Keys(namespace)
    scripts, holder, rerun = await _holder_and_rerun(redis, namespace)
    if request_:
        await redis.hset(keys.cancel_requests, holder, request_)
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    if request_ is None:
        assert await redis.zscore(keys.dead, holder) is not None
    assert await redis.zscore(keys.queue("work"), rerun) is not None
    assert await redis.hget(keys.dedup, "work:k") == rerun.encode()
    assert await redis.hget(keys.dedup_of_job, rerun) == b"rwork:k"
    assert await redis.zscore(keys.dedup_reruns, rerun) is None
    assert not await redis.hexists(keys.dedup_next, "work:k")


async def test_a_name_that_is_not_the_keys_queues_nothing(redis: Redis, namespace: str) -> None:
    """reap.lua queues the rerun only on the queue of its key's job name: given another name's
    index (a stale read), it frees the key and leaves the rerun for the next enqueue."""
    keys = Keys(namespace)
    scripts, holder, rerun = await _holder_and_rerun(redis, namespace)
    await redis.zadd(keys.pools, {"dead": 0})
    members = [(f"{holder}:bad name".encode(), holder, "")]
    done = await scripts.reap("dead", 1000, 3, b'"e"', b'"m"', members, True, {holder: "other"})
    assert done.buried == 1
    assert await redis.zcard(keys.queue("other")) == 0
    assert await redis.zcard(keys.queue("work")) == 0
    assert await redis.hget(keys.dedup_next, "work:k") == rerun.encode()
    assert not await redis.hexists(keys.dedup, "work:k")


async def test_a_resent_reap_changes_nothing(redis: Redis, namespace: str) -> None:
    """A re-send (redis-py, after a lost reply) finds the entry gone: the rerun is queued once."""
    keys = Keys(namespace)
    scripts, _holder, rerun = await _holder_and_rerun(redis, namespace)
    rec = Recorder(scripts._s["reap"])
    scripts._s["reap"] = rec  # type: ignore[assignment]
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("work"), rerun) is not None
    before = await snapshot(redis, namespace)
    assert await rec.resend(0) == [0, 0, 1, 0, 0]
    assert await snapshot(redis, namespace) == before


async def test_a_malformed_entry_whose_reruns_name_has_a_key_of_another_type_waits_for_it(
    redis: Redis, namespace: str
) -> None:
    """work's history key holds another type: the malformed entry (whose job's rerun goes on
    work's queue) is left alone like work's own entries, nothing written; once the key is
    repaired its job is buried and the rerun queued; a job of another name in the dead pool is
    taken back meanwhile. (Before, the reap was refused: every job of the dead pool waited for
    the repair.)"""
    keys = Keys(namespace)
    scripts, holder, rerun = await _holder_and_rerun(redis, namespace)
    other = await Enqueuer(redis, namespace=namespace).enqueue("other")
    assert other is not None  # (a job of another name in the dead pool: taken back meanwhile)
    await redis.zrem(keys.queue("other"), other.id)
    await redis.zadd(keys.in_progress("dead"), {f"{other.id}:other": 0})
    key = keys.history_of("work")
    await redis.set(key, "x")
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    assert await redis.zrange(keys.queue("other"), 0, -1) == [other.id.encode()]
    assert await redis.zcard(keys.in_progress("dead")) == 1
    assert await redis.zscore(keys.dead, holder) is None
    assert await redis.get(key) == b"x"
    assert "dead" not in await scripts.dead_pools(1000)  # (held: its entry counted as left)
    await redis.delete(key)  # repaired
    await redis.zadd(keys.retired, {"dead": 1})  # (held a dead timeout: listed again)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.dead, holder) is not None
    assert await redis.zscore(keys.queue("work"), rerun) is not None
