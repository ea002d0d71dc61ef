"""Issue 12, defects 2 and 11: a pool proves it is alive by a lease that its heartbeats renew.
It does not start without one; it fetches nothing while it cannot prove it; a broken heartbeat
connection alone does not cost it the lease; and a pool whose lease was taken (its jobs given to
other pools) abandons those jobs at once, writes nothing for them, and carries on under a new id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

import errands.worker.heartbeat as heartbeat_module
from errands import Enqueuer, Job, RedisUnavailableError, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.worker.lease import LeaseKeeper
from tests.support.client_env import until

HB, DEAD = 0.2, 1.0


@pytest.fixture
def dead_heartbeat_connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The heartbeat thread's own client talks to a closed port; the pool's is fine."""

    def broken(client: Any, timeout_cap: float | None = None) -> redis.Redis:
        return redis.Redis(port=9, socket_timeout=0.2, socket_connect_timeout=0.2)

    monkeypatch.setattr(heartbeat_module, "sync_client_like", broken)
    yield


def make_pool(redis: Redis, namespace: str, **options: Any) -> WorkerPool:
    options = {"heartbeat_interval": HB, "dead_timeout": DEAD, "shutdown_grace": 0.5, **options}
    return WorkerPool(redis, namespace=namespace, **options)


def recording_pool(redis: Redis, namespace: str) -> tuple[WorkerPool, list[str]]:
    """A pool of one job type, ``work``, whose runs are listed."""
    pool, ran = make_pool(redis, namespace), []

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.id)

    return pool, ran


@pytest.mark.usefixtures("dead_heartbeat_connection")
async def test_a_pool_whose_first_heartbeat_fails_does_not_start(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    pool, ran = recording_pool(redis, namespace)
    await Enqueuer(redis, namespace=namespace).enqueue("work")
    with pytest.raises(RedisUnavailableError, match="first heartbeat failed"):
        await pool.start()
    await asyncio.sleep(0.3)
    assert not pool.started and ran == []
    assert await redis.zcard(keys.pools) == 0
    assert await redis.zcard(keys.queue("work")) == 1


async def test_a_broken_heartbeat_connection_alone_keeps_the_lease(
    redis: Redis, namespace: str
) -> None:
    """The heartbeat thread's connection breaks while the pool's main connection works: the
    pool renews its lease through the main connection, so no other pool takes its job and runs
    it a second time at once (it used to be reaped, keep fetching, and overlap)."""
    keys = Keys(namespace)
    spans: list[tuple[str, float, float]] = []

    def register(pool: WorkerPool) -> None:
        @pool.job("serial", max_concurrency=1)
        async def serial(job: Job) -> None:
            began = asyncio.get_running_loop().time()
            await asyncio.sleep(DEAD * 3)
            spans.append((pool.id, began, asyncio.get_running_loop().time()))

    cut = make_pool(redis, namespace)
    register(cut)
    async with cut:
        assert cut.heartbeater is not None
        break_heartbeat_connection(cut)
        job = await Enqueuer(redis, namespace=namespace).enqueue("serial")
        assert job is not None
        other = make_pool(redis, namespace)
        register(other)
        async with other:
            await asyncio.sleep(DEAD * 3.5)
            assert await redis.zscore(keys.pools, cut.id) is not None
        assert cut.lease_keeper is not None and cut.lease_keeper.renewals > 0
        assert cut.lease_losses == 0
    assert [s[0] for s in spans] == [cut.id]


def unreachable(client: Any, timeout_cap: float | None = None) -> redis.Redis:
    """A heartbeat thread's client that reaches nothing."""
    return redis.Redis(port=9, socket_timeout=0.2, socket_connect_timeout=0.2)


def break_heartbeat_connection(pool: WorkerPool) -> None:
    """From now on the pool's heartbeat thread reaches nothing (its main connection works)."""
    beats = pool.heartbeater
    assert beats is not None
    beats._client = redis.Redis(port=9, socket_timeout=0.2, socket_connect_timeout=0.2)
    beats._script = beats._client.register_script(beats._script.script)


async def test_a_pool_that_cannot_prove_it_is_alive_fetches_nothing(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No renewal for the dead timeout (both paths failing, and registering anew failing too):
    the pool gives its lease up and gets no new work until it can register again."""
    keys = Keys(namespace)
    pool, ran = recording_pool(redis, namespace)

    async def failing(self: LeaseKeeper) -> bool:
        return False

    async with pool:
        assert pool.heartbeater is not None
        first = pool.id
        await until(lambda: pool.lease is not None and pool.lease.beats >= 1)
        monkeypatch.setattr(LeaseKeeper, "renew", failing)
        monkeypatch.setattr(heartbeat_module, "sync_client_like", unreachable)
        break_heartbeat_connection(pool)
        await until(lambda: pool.lease_losses == 1, timeout=DEAD + 2)
        await Enqueuer(redis, namespace=namespace).enqueue("work")
        pool._wake.set()
        await asyncio.sleep(DEAD + 3 * HB)
        assert ran == [] and await redis.zcard(keys.queue("work")) == 1
        monkeypatch.undo()  # it can register again: it fetches, under a new id
        await until(lambda: ran, timeout=10)
        assert pool.id != first


async def test_a_pool_cut_off_gives_its_lease_up_before_a_reaper_can_take_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both renewal paths cut (as behind a black hole): the pool cancels its running job before
    its lease, by the Redis clock, is older than the dead timeout, so the job never runs in
    two places at once; it runs again once a reaper has taken the old lease."""
    keys = Keys(namespace)
    pool = make_pool(redis, namespace)
    starts: list[str] = []
    cancelled_at: list[float] = []

    @pool.job("long")
    async def long(job: Job) -> str:
        starts.append(pool.id)
        if len(starts) == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled_at.append(time.time())
                raise
        return "done"

    async def failing(self: LeaseKeeper) -> bool:
        return False

    job = await Enqueuer(redis, namespace=namespace).enqueue("long")
    assert job is not None
    async with pool:
        await until(lambda: starts, timeout=5)
        first = pool.id
        monkeypatch.setattr(LeaseKeeper, "renew", failing)
        break_heartbeat_connection(pool)
        await until(lambda: cancelled_at, timeout=DEAD + 2)
        stamp = await redis.zscore(keys.pools, first)  # its last renewal
        assert stamp is not None
        # the lease could be taken from stamp + DEAD on (Redis clock: this machine's)
        assert cancelled_at[0] < stamp / 1000 + DEAD
        monkeypatch.undo()
        assert await job.result(timeout=15) == "done"
        assert starts[0] == first and starts[1] != first
        assert pool.lease_losses == 1


async def test_a_pool_whose_lease_was_taken_abandons_its_jobs_and_carries_on_anew(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As after a freeze longer than the dead timeout: a reaper took the lease and gave the
    job back. The pool cancels the handler at once, writes nothing for that attempt (no ack,
    no check-in), logs it, and registers under a new id, which may run the job again."""
    keys = Keys(namespace)
    # the lease is taken by the reap below and noticed at the next heartbeat (HB); a longer
    # dead timeout only keeps a loaded machine from also giving the new lease up on its own
    pool = make_pool(redis, namespace, dead_timeout=10 * DEAD)
    events: list[tuple[str, str]] = []
    release, reaped_now = asyncio.Event(), asyncio.Event()

    @pool.job("long")
    async def long(job: Job) -> str:
        events.append(("start", pool.id))
        try:
            while not release.is_set():
                # a check-in sent before the reap may be answered after it: tell them apart
                sent_after_reap = reaped_now.is_set()
                ok = await job.checkin("working")
                events.append(("checkin" if sent_after_reap else "checkin-before", str(ok)))
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            events.append(("cancelled", pool.id))
            raise
        return "done"

    job = await Enqueuer(redis, namespace=namespace).enqueue("long")
    assert job is not None
    caplog.set_level(logging.INFO, "errands")
    async with pool:
        await until(lambda: events, timeout=20)
        first = pool.id
        scripts = Scripts(redis, keys)
        # a reaper that found the pool dead (as after SIGSTOP): lease and job taken
        member = f"{job.id}:long"
        before = len(events)
        reaped = await scripts.reap(first, -(10**9), 3, b"{}", b"{}", [(member, job.id, "long")])
        reaped_now.set()
        assert (reaped.requeued, reaped.drained) == (1, True)
        # noticed at a heartbeat (every HB), well before the pool's own dead timeout
        await until(lambda: ("cancelled", first) in events, timeout=5)
        await until(lambda: pool.id != first and pool.worker is not None, timeout=20)
        second = pool.id
        await until(lambda: ("start", second) in events, timeout=20)  # runs it again, anew
        release.set()
        assert await job.result(timeout=20) == "done"
    assert await redis.zscore(keys.pools, first) is None
    assert await redis.zscore(keys.retired, first) is None  # drained
    assert await redis.hget(keys.stats, "processed") == b"1"
    assert await redis.hget(keys.running, "long") == b"0"
    assert pool.lease_losses == 1
    assert "lost its lease" in caplog.text and f"pool {first} is now pool {second}" in caplog.text
    cancelled_at = events.index(("cancelled", first))
    assert ("checkin", "True") not in events[before:cancelled_at]  # refused once taken


async def test_the_jobs_of_a_retired_pool_and_of_an_unknown_one_come_back(
    redis: Redis, namespace: str
) -> None:
    """In-progress sets of pools missing from the registry: a retired pool's (its lease taken,
    its set not drained yet) is drained by any reaper; one of a pool found nowhere (left by an
    older version) by ``Reaper.sweep()``. Their max_concurrency slots come back."""
    keys = Keys(namespace)
    jobs = await Enqueuer(redis, namespace=namespace).enqueue_many([("capped", {})] * 2)
    for job, ghost in zip(jobs, ("retiredpool00001", "unknownpool00001"), strict=True):
        assert await redis.zrem(keys.queue("capped"), job.id) == 1
        await redis.zadd(keys.in_progress(ghost), {f"{job.id}:capped": 1})
        await redis.hincrby(keys.running, "capped", 1)
    await redis.zadd(keys.retired, {"retiredpool00001": 1})
    pool = make_pool(redis, namespace)
    ran: list[str] = []

    @pool.job("capped", max_concurrency=2)
    async def capped(job: Job) -> None:
        ran.append(job.id)

    async with pool:
        assert pool.reaper is not None
        await until(lambda: ran == [jobs[0].id], timeout=DEAD + 5)
        assert await pool.reaper.sweep() == 1
        await until(lambda: len(ran) == 2, timeout=5)
        await pool.drain(timeout=5)
    assert await redis.hget(keys.running, "capped") == b"0"
    assert await redis.zcard(keys.retired) == 0
    assert not await redis.exists(keys.in_progress("unknownpool00001"))


async def test_a_pool_whose_lease_vanished_with_the_data_says_a_reaper_or_a_data_loss(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis restarted without its data (or flushed): the pool's id is no longer registered,
    as after a reap. No reaper acted, so the line names both causes, not a reaper alone."""
    pool = make_pool(redis, namespace, dead_timeout=10 * DEAD)  # (never given up on its own)
    pool.job("work")(lambda job: None)
    caplog.set_level(logging.INFO, "errands")
    async with pool:
        first = pool.id
        # the namespace's data lost, as by a restart without persistence
        lost = [key async for key in redis.scan_iter(match=f"errands:{{{namespace}}}:*")]
        assert lost
        await redis.delete(*lost)
        await until(lambda: pool.id != first and pool.worker is not None, timeout=20)
    lines = [r.getMessage() for r in caplog.records if "lost its lease" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "a reaper took its lease" in lines[0]
    assert "or the Redis server lost its data" in lines[0]


async def test_an_abandoned_job_that_swallows_its_cancellation_is_cancelled_again_at_once(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that swallows the cancellation of a lost lease (as one suppressing what a
    call raised for it may) was cancelled again only after the pool's deregister, which waits
    up to 1 s for a Redis that does not answer: it ran on meanwhile, while another pool could
    run it (soak seed 93). It is cancelled again every 0.1 s from the loss on."""
    pool = make_pool(redis, namespace)
    started: list[float] = []
    cancels: list[float] = []

    @pool.job("long")
    async def long(job: Job) -> None:
        started.append(time.monotonic())
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancels.append(time.monotonic())
                if len(cancels) > 1:
                    raise  # (the first one swallowed)

    async def failing(self: LeaseKeeper) -> bool:
        return False

    async def unanswered(self: Scripts, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(5)  # (a deregister cut off, as behind a black hole)

    await Enqueuer(redis, namespace=namespace).enqueue("long")
    async with pool:
        await until(lambda: started, timeout=5)
        monkeypatch.setattr(LeaseKeeper, "renew", failing)
        monkeypatch.setattr(Scripts, "deregister", unanswered)
        break_heartbeat_connection(pool)
        await until(lambda: len(cancels) >= 2, timeout=DEAD + 4)
        monkeypatch.undo()
    assert cancels[1] - cancels[0] < 0.5, cancels  # (1 s and more before: the deregister's)
