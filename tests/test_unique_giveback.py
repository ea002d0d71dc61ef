"""An enqueue_unique job's lock goes when it starts (its fetch). A job fetched ahead of a free
slot and given back before it started (worker/lookahead.py: every slot held by long jobs, the
pool stopping or quiet), or put back by the orphan sweep (a fetch whose reply was lost), never
started: it takes its lock again, as it held it before the fetch, so an enqueue_unique of the
same args meanwhile is a duplicate (before, it stored a second job and both ran). A job that
ran (a retry, a snooze) or was taken back from a dead pool (it may have started there) waits
without it, as before. When another live job took the lock between the fetch and the
give-back, the given-back job waits without it (both were accepted; neither is dropped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.building import unique_digest
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.records import Settle
from errands.store.scripts import Scripts
from errands.worker.reaper import Reaper
from errands.worker.settler import Settler
from tests.support.fetched import fetch_none
from tests.support.invariants import assert_invariants


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


def _settler(scripts: Scripts) -> Settler:
    return Settler(scripts, "p", SystemClock(), JSONSerializer(), dead_max_jobs=10,
                   dead_max_age=60.0, history=False)  # fmt: skip


async def _fetched(redis: Redis, namespace: str, enqueuer: Enqueuer) -> tuple[Scripts, str]:
    """One unique job of "sync" enqueued and fetched by pool p (its lock released)."""
    first = await enqueuer.enqueue_unique("sync", {"v": 1})
    assert first is not None
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    return scripts, first.id


async def test_a_job_given_back_unstarted_takes_its_lock_again(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys = Keys(namespace)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    digest = unique_digest("sync", {"v": 1})
    assert await redis.hget(keys.unique, digest) is None  # its start released it
    await assert_invariants(redis, namespace)
    await _settler(scripts).requeue_fetched(item, "sync")  # held ahead, never started: back
    assert await redis.hget(keys.unique, digest) == holder.encode()
    assert await redis.zscore(keys.unique_expiry, digest) is not None
    await assert_invariants(redis, namespace)
    assert await enqueuer.enqueue_unique("sync", {"v": 1}) is None  # a duplicate
    assert await redis.hlen(keys.jobs) == 1
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])  # it starts: the lock goes
    assert item.id == holder and await redis.hget(keys.unique, digest) is None
    await assert_invariants(redis, namespace)


async def test_a_lock_taken_meanwhile_stays_its_takers(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Another enqueue_unique stored a job while the first was fetched (its lock free): both
    were accepted; the first, given back, waits without the lock, the other keeps it."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    second = await enqueuer.enqueue_unique("sync", {"v": 1})
    assert second is not None
    await _settler(scripts).requeue_fetched(item, "sync")
    keys = Keys(namespace)
    digest = await redis.hget(keys.unique_of_job, second.id)
    assert digest is not None and await redis.hget(keys.unique, digest) == second.id.encode()
    assert not await redis.hexists(keys.unique_of_job, holder)
    assert await redis.zscore(keys.queue("sync"), holder) is not None
    await assert_invariants(redis, namespace)


async def test_a_retry_given_back_takes_no_lock(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Its first start released the lock for good: a snoozed job, fetched ahead and given back,
    waits without it (an enqueue_unique of its args stores a job)."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    later = Settle(item.id, "sync", "later", Keys(namespace).scheduled("sync"), 0, 1,
                   score_ms=1, token=item.token)  # fmt: skip
    assert await scripts.settle("p", later)  # snoozed: it waits again, after its start
    await assert_invariants(redis, namespace)
    assert await scripts.promote(["sync"], 10**13, 10) == (1, -1)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    assert item.id == holder
    await _settler(scripts).requeue_fetched(item, "sync")
    await assert_invariants(redis, namespace)
    assert await enqueuer.enqueue_unique("sync", {"v": 1}) is not None


async def test_a_job_taken_back_from_a_dead_pool_waits_without_its_lock(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """It may have started in the dead pool: it waits without its lock, as before."""
    first = await enqueuer.enqueue_unique("sync", {"v": 1})
    assert first is not None
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    assert [f.id for f in await scripts.fetch("dead", 0, 1, [("sync", 0)])] == [first.id]
    await redis.zadd(keys.pools, {"dead": 1})  # its heartbeats stopped long ago
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    assert await redis.zscore(keys.queue("sync"), first.id) is not None
    assert not await redis.hexists(keys.unique_of_job, first.id)
    await assert_invariants(redis, namespace)
    assert await enqueuer.enqueue_unique("sync", {"v": 1}) is not None


async def test_a_job_ending_after_its_fetch_leaves_no_lock(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """Dead after its fetch (a settle ending it): nothing of its lock stays."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    keys = Keys(namespace)
    dead = Settle(item.id, "sync", "dead", keys.dead, 1, 1, token=item.token)
    assert await scripts.settle("p", dead)
    assert not await redis.hexists(keys.unique_of_job, holder)
    await assert_invariants(redis, namespace)


async def test_an_orphan_swept_back_takes_its_lock_again(redis: Redis, namespace: str) -> None:
    """A fetch whose reply was lost (worker/orphans.py) left a job no task of the pool holds;
    it never started: the orphan sweep puts it back holding its lock again."""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=4, poll_interval=3600.0)

    @pool.job("sync")
    async def sync(job: Job, v: int) -> None:
        pass

    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch_none(worker)  # (the orphan stays one)
        async with Enqueuer(redis, namespace=namespace) as enq:
            first = await enq.enqueue_unique("sync", {"v": 1})
            assert first is not None
            scripts = Scripts(redis, keys)
            (orphan,) = await scripts.fetch(worker.pool_id, 0, 5, [("sync", 0)]) or []  # lost
            assert orphan.id == first.id
            await worker._reclaim_orphans()
            assert worker.reclaimed == 1
            assert await redis.zscore(keys.queue("sync"), first.id) is not None
            await assert_invariants(redis, namespace)
            assert await enq.enqueue_unique("sync", {"v": 1}) is None
    finally:
        await pool.stop()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def test_jobs_fetched_ahead_and_given_back_at_stop_hold_their_locks(
    redis: Redis, namespace: str
) -> None:
    """A pool with lookahead on, every slot held by long jobs, holds two unique jobs fetched
    ahead (their locks released); stopped, it gives them back: each holds its lock again, and
    an enqueue_unique of their args stores nothing."""
    keys = Keys(namespace)
    gate = asyncio.Event()
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)

    @pool.job("work")
    async def work(job: Job, block: bool, n: int = 0) -> None:
        if block:
            await gate.wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue_many([("work", {"block": False}) for _ in range(6)])
    async with pool:
        await pool.drain(timeout=5)  # short runs: the lookahead switches on
        worker = pool.worker
        assert worker is not None and worker.lookahead == 2
        await enqueuer.enqueue_many([("work", {"block": True}) for _ in range(2)])

        async def busy() -> bool:
            return worker.busy == 2

        await _until(busy)
        for n in (1, 2):
            assert await enqueuer.enqueue_unique("work", {"block": False, "n": n}) is not None

        async def held_ahead() -> bool:
            return len(worker.buffer) == 2

        await _until(held_ahead)
        assert await redis.hlen(keys.unique) == 0  # fetched: their locks released
    gate.set()
    assert await redis.hlen(keys.unique) == 2  # given back unstarted: taken again
    await assert_invariants(redis, namespace)
    for n in (1, 2):
        assert await enqueuer.enqueue_unique("work", {"block": False, "n": n}) is None
    assert await redis.zcard(keys.queue("work")) == 4


async def test_a_give_back_sent_again_writes_nothing(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """A give-back re-sent (a lost reply) after its lock was taken again and the job fetched
    again, or after another job took the lock, changes nothing: the attempt fences it."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys, digest = Keys(namespace), unique_digest("sync", {"v": 1})
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    back = Settle(item.id, "sync", "requeue", keys.queue("sync"), 0, 1, token=item.token)
    back.unstart = True
    assert await scripts.settle("p", back)
    assert await redis.hget(keys.unique, digest) == holder.encode()
    assert await scripts.settle("p", back)  # sent again while it waits: answered, nothing new
    assert await redis.hget(keys.unique_of_job, holder) == digest.encode()
    (again,) = await scripts.fetch("p", 1, 1, [("sync", 0)])  # fetched again: a mark
    assert again.id == holder
    mark = await redis.hget(keys.unique_of_job, holder)
    assert mark is not None and mark.endswith(b":" + digest.encode())
    await scripts.settle("p", back)  # the old give-back: another attempt's, fenced off
    assert await redis.hget(keys.unique, digest) is None
    assert await redis.hget(keys.unique_of_job, holder) == mark
    await assert_invariants(redis, namespace)


async def test_a_lock_taken_again_goes_at_every_end(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """A given-back job holding its lock again that is updated (its lock moves with its args),
    cancelled or destroyed leaves no lock and no mark behind."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys = Keys(namespace)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    await _settler(scripts).requeue_fetched(item, "sync")
    async with Client(redis, namespace=namespace) as client:
        await client.update_job(holder, args={"v": 2})
        new = unique_digest("sync", {"v": 2})
        assert await redis.hget(keys.unique, new) == holder.encode()
        assert await redis.hget(keys.unique, unique_digest("sync", {"v": 1})) is None
        await assert_invariants(redis, namespace)
        assert await enqueuer.enqueue_unique("sync", {"v": 2}) is None
        (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
        assert (await redis.hget(keys.unique_of_job, holder) or b"").endswith(new.encode())
        await _settler(scripts).requeue_fetched(item, "sync")  # given back: the new lock
        assert await redis.hget(keys.unique, new) == holder.encode()
        assert await client.cancel(holder) == "cancelled"
        assert await redis.hlen(keys.unique) == 0 and await redis.hlen(keys.unique_of_job) == 0
        second = await enqueuer.enqueue_unique("sync", {"v": 3})
        assert second is not None
        (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
        assert await client.destroy(second.id)  # destroyed while fetched: at its give-back
        await _settler(scripts).requeue_fetched(item, "sync")
        assert await redis.hlen(keys.unique) == 0 and await redis.hlen(keys.unique_of_job) == 0
        await assert_invariants(redis, namespace)


async def test_a_lock_taken_again_past_its_expiry_is_stale(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """The expiry kept by the mark has passed at the give-back: the lock is taken again as it
    was (stale), so an enqueue_unique takes it over, as it would have before the fetch."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys, digest = Keys(namespace), unique_digest("sync", {"v": 1})
    await redis.zadd(keys.unique_expiry, {digest: 1})  # (long past)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    assert (await redis.hget(keys.unique_of_job, holder) or b"").startswith(b"1:")
    await _settler(scripts).requeue_fetched(item, "sync")
    assert await redis.zscore(keys.unique_expiry, digest) == 1
    other = await enqueuer.enqueue_unique("sync", {"v": 1})
    assert other is not None and await redis.hget(keys.unique, digest) == other.id.encode()
    assert not await redis.hexists(keys.unique_of_job, holder)
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize(
    "value", [b"d41d8cd98f00b204e9800998ecf8427e", b"x:y", b"5:", b":", b"5:a:b"]
)
async def test_a_record_by_hand_or_an_older_pool_is_never_raised_on(
    redis: Redis, namespace: str, enqueuer: Enqueuer, value: bytes
) -> None:
    """The uniqjob record of a fetched job found as a plain digest (no lock of it: an older
    pool, or by hand) or a bad mark: the give-back takes no lock on a digest the record does
    not name as a mark, never raises, and leaves no record."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys = Keys(namespace)
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    await redis.hset(keys.unique_of_job, holder, value)
    await _settler(scripts).requeue_fetched(item, "sync")
    assert await redis.zscore(keys.queue("sync"), holder) is not None
    assert await redis.hlen(keys.unique) == 0 and await redis.zcard(keys.unique_expiry) == 0
    if b":" in value:
        assert not await redis.hexists(keys.unique_of_job, holder)


async def test_a_stale_holder_keeps_the_record_of_the_lock_it_still_holds(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """The give-back's retake (lib/jobstate.lua unique_take, shared with move.lua) drops a stale
    holder's record only when it names the lock taken. A holder found on the lock (by hand) while
    its record names another lock it holds keeps that record: before, it was dropped, and that
    other lock was left without its record."""
    scripts, holder = await _fetched(redis, namespace, enqueuer)
    keys, digest = Keys(namespace), unique_digest("sync", {"v": 1})
    (item,) = await scripts.fetch("p", 1, 1, [("sync", 0)])
    other = await enqueuer.enqueue_unique("sync", {"v": 2}, delay=60)
    assert other is not None
    mine = await redis.hget(keys.unique_of_job, other.id)
    assert mine is not None and mine.decode() != digest
    await redis.hset(keys.unique, digest, other.id)  # (by hand: a stale claim on the lock)
    await redis.zadd(keys.unique_expiry, {digest: 1})
    await _settler(scripts).requeue_fetched(item, "sync")
    assert await redis.hget(keys.unique, digest) == holder.encode()  # taken over (stale)
    assert await redis.hget(keys.unique_of_job, holder) == digest.encode()
    assert await redis.hget(keys.unique_of_job, other.id) == mine  # its own lock's record
    assert await redis.hget(keys.unique, mine.decode()) == other.id.encode()
    await assert_invariants(redis, namespace)
