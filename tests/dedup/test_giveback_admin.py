"""A job held until started (or debounced), fetched ahead and given back unstarted, takes its
key again (test_giveback.py). Here: the give-back sent again, a key another job took meanwhile,
and the admin calls on such a job (before and after its give-back) each leave the key held by
a live waiting job or by none (never by a job gone or ended)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.records import Acked, Fetched
from errands.store.scripts import Scripts
from errands.worker.settler import Settler
from tests.support.invariants import assert_invariants, check_invariants


async def _pool(redis: Redis, namespace: str) -> tuple[Scripts, Settler]:
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    settler = Settler(scripts, "p", SystemClock(), JSONSerializer(), dead_max_jobs=10,
                      dead_max_age=60.0, history=False)  # fmt: skip
    return scripts, settler


async def _fetch(scripts: Scripts, job_id: str) -> Fetched:
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)]) or []
    assert item.id == job_id
    return item


async def test_a_give_back_sent_again_writes_nothing(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    scripts, settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert a is not None
    item = await _fetch(scripts, a.id)
    await settler.requeue_fetched(item, "sync")
    assert await redis.hget(keys.dedup, "sync:k") == a.id.encode()
    # fetched again and started: the key is free; the first give-back, sent again, is fenced
    item2 = await _fetch(scripts, a.id)
    await settler.requeue_fetched(item, "sync")  # (the old attempt's token)
    assert await redis.hget(keys.dedup, "sync:k") is None
    assert await redis.hget(keys.dedup_of_job, a.id) == b"Ssync:k"
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert b is not None and b.dedup is not None and b.dedup.enqueued
    await settler.requeue_fetched(item, "sync")  # again, the key now b's: nothing changes
    assert await redis.hget(keys.dedup, "sync:k") == b.id.encode()
    await settler.requeue_fetched(item2, "sync")  # a's second give-back: b holds the key
    assert await redis.hget(keys.dedup, "sync:k") == b.id.encode()
    assert not await redis.hexists(keys.dedup_of_job, a.id)  # waits without one
    assert await redis.zscore(keys.queue("sync"), a.id) is not None
    await settler.requeue_fetched(item2, "sync")  # sent again: nothing more
    assert await redis.hget(keys.dedup, "sync:k") == b.id.encode()
    assert await redis.hget(keys.dedup_of_job, b.id) == b"ssync:k"
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("how", ["cancel", "destroy", "delete"])
@pytest.mark.parametrize("dedup", [Dedup("k"), Dedup("k", debounce=True)], ids=["s", "d"])
async def test_a_given_back_job_removed_frees_its_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client, how: str, dedup: Dedup
) -> None:
    scripts, settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=dedup)
    assert a is not None
    await settler.requeue_fetched(await _fetch(scripts, a.id), "sync")
    if how == "cancel":
        assert await client.cancel(a.id) == "cancelled"
    elif how == "destroy":
        assert await client.destroy(a.id)
    else:
        assert await client.delete_queued_job(a.id)
    await assert_invariants(redis, namespace)
    keys = Keys(namespace)
    assert not await redis.hexists(keys.dedup, "sync:k")
    assert not await redis.hexists(keys.dedup_of_job, a.id)
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=dedup)
    assert b is not None and b.dedup is not None and b.dedup.enqueued


@pytest.mark.parametrize("how", ["cancel", "destroy"])
async def test_a_job_cancelled_while_fetched_ahead_frees_its_key_at_its_give_back(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client, how: str
) -> None:
    keys = Keys(namespace)
    scripts, settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert a is not None
    item = await _fetch(scripts, a.id)
    if how == "cancel":
        assert await client.cancel(a.id) == "running"
    else:
        assert await client.destroy(a.id)
    await settler.requeue_fetched(item, "sync")
    assert not await redis.hexists(keys.dedup, "sync:k")
    assert not await redis.hexists(keys.dedup_of_job, a.id)
    assert await redis.zscore(keys.queue("sync"), a.id) is None
    await assert_invariants(redis, namespace)
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert b is not None and b.dedup is not None and b.dedup.enqueued


async def test_a_given_back_job_updated_keeps_its_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    scripts, settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert a is not None
    await settler.requeue_fetched(await _fetch(scripts, a.id), "sync")
    await client.update_job(a.id, args={"v": 3}, priority=5)
    await assert_invariants(redis, namespace)
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert b is not None and b.dedup is not None
    assert (b.dedup.status, b.dedup.holder) == ("dropped", a.id)


async def test_a_mark_an_older_pool_left_holds_no_key_and_goes_at_the_end(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Pools of an errands before the fetch marks (beside newer ones, in a rolling deploy) never
    drop an `S` mark: one whose reaper takes a job back from a dead newer pool leaves the mark on
    the waiting job (made by hand here). It holds no key: a duplicate is stored, the invariant
    checker reports the mark, and the job's end (here its ack) takes it away."""
    keys = Keys(namespace)
    scripts, _settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert a is not None
    await redis.hdel(keys.dedup, "sync:k")  # (what an older reap.lua leaves: the key freed by
    await redis.hset(keys.dedup_of_job, a.id, "Ssync:k")  # the fetch, the mark kept)
    report = await check_invariants(redis, namespace)
    assert [v.detail for v in report.violations if v.check == "dedup"] == [
        f"fetch mark {a.id} -> Ssync:k: not running"
    ]
    b = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
    assert b is not None and b.dedup is not None and b.dedup.enqueued
    item = await _fetch(scripts, a.id)
    assert await redis.hget(keys.dedup_of_job, a.id) == b"Ssync:k"  # (its fetch: no change)
    done = [Acked(a.id, "sync", b"1", 0, 60_000, 1, token=item.token)]
    assert await scripts.ack("p", done, False, 0, True) == []
    assert not await redis.hexists(keys.dedup_of_job, a.id)
    assert await redis.hget(keys.dedup, "sync:k") == b.id.encode()
    await assert_invariants(redis, namespace)


async def test_a_give_back_finding_its_key_owner_gone_hands_the_key_to_its_rerun(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """The key's owner (rerun_latest) was removed by hand, its rerun waiting: the give-back of
    a job of the key (until started, same job name) counts the owner gone, as an enqueue does,
    and the rerun takes the key and goes on its queue (before, the given-back job took the key
    and the rerun waited for an owner that never ends, until the key's next enqueue)."""
    keys = Keys(namespace)
    scripts, settler = await _pool(redis, namespace)
    a = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    assert a is not None
    item = await _fetch(scripts, a.id)  # started: the key is free
    rl = Dedup("k", until="finished", rerun_latest=True)
    r = await enqueuer.enqueue("sync", {"v": 2}, dedup=rl)
    assert r is not None and r.dedup is not None and r.dedup.enqueued
    await _fetch(scripts, r.id)
    n = await enqueuer.enqueue("sync", {"v": 3}, dedup=rl)
    assert n is not None and n.dedup is not None and n.dedup.status == "rerun_queued"
    await redis.hdel(keys.jobs, r.id)  # (removed by hand)
    await settler.requeue_fetched(item, "sync")
    assert await redis.hget(keys.dedup, "sync:k") == n.id.encode()
    assert await redis.zscore(keys.queue("sync"), n.id) is not None
    assert not await redis.hexists(keys.dedup_of_job, a.id)
