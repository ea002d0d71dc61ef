"""Waking one idle pool (store/lua/lib/wake.lua): an enqueue wakes one of the idle pools that
serve the job's name, not all of them (or hands its job to one: lib/handoff.lua); a burst is
spread by the pools themselves; a wake-up sent to a pool that is gone is covered by the other
pools' next fetch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.scripts import Scripts

QUIET = 30.0  # poll_interval of pools that must be woken, not find jobs by polling


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            ok = check()
            if not isinstance(ok, bool):
                ok = await ok
            if ok:
                return
            await asyncio.sleep(0.005)


class Fetches:
    """Counts the fetches of each pool's fetch loop (asked > 0) after ``reset()``."""

    def __init__(self, pools: list[WorkerPool]) -> None:
        self.counts = {id(p): 0 for p in pools}
        for pool in pools:
            assert pool.worker is not None
            original = pool.worker.scripts.fetch

            async def counting(*a: Any, _p: int = id(pool), _f: Any = original, **kw: Any) -> Any:
                if a[2] > 0:
                    self.counts[_p] += 1
                return await _f(*a, **kw)

            pool.worker.scripts.fetch = counting  # type: ignore[method-assign]

    def reset(self) -> None:
        for key in self.counts:
            self.counts[key] = 0

    @property
    def fetching(self) -> int:
        """How many pools fetched since the reset."""
        return sum(1 for n in self.counts.values() if n)


class Wakeups:
    """Counts the wake-up messages of a namespace: broadcast and to single pools."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.broadcast = 0
        self.single: list[str] = []

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[Wakeups]:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.keys.wake_channel)
            await pubsub.psubscribe(self.keys.pool_wake_channel("*"))
            reader = asyncio.create_task(self._read(pubsub))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            channel = message["channel"].decode()
            if channel == self.keys.wake_channel:
                self.broadcast += 1
            else:
                self.single.append(channel.rpartition(":")[2])


def make_pools(url: str, namespace: str, n: int, **kw: Any) -> tuple[list[WorkerPool], list[str]]:
    started: list[str] = []
    pools = []
    for _ in range(n):
        pool = WorkerPool.from_url(url, namespace=namespace, **kw)
        pool.job("w")(_recorder(pool, started))
        pools.append(pool)
    return pools, started


def _recorder(pool: WorkerPool, started: list[str]) -> Callable[..., Awaitable[None]]:
    async def w(job: Job, i: int = 0) -> None:
        started.append(pool.id)

    return w


def handed(pool: WorkerPool) -> int:
    """How many jobs enqueues handed to the pool (lib/handoff.lua)."""
    assert pool.worker is not None
    return pool.worker.mailbox.received


async def idle_count(redis: Redis, keys: Keys, name: str = "w") -> int:
    return int(await redis.zcard(keys.idle_for(name)))


async def all_idle(redis: Redis, keys: Keys, pools: list[WorkerPool]) -> None:
    """Every pool marked idle for "w" and subscribed to its own wake channel."""

    async def ready() -> bool:
        if await idle_count(redis, keys) != len(pools):
            return False
        channels = [keys.pool_wake_channel(p.id) for p in pools]
        subs = await redis.pubsub_numsub(*channels)
        return all(n == 1 for _c, n in subs)

    await until(ready)


@contextlib.asynccontextmanager
async def running(pools: list[WorkerPool]) -> AsyncIterator[None]:
    for pool in pools:
        await pool.start()
    try:
        yield
    finally:
        for pool in pools:
            await pool.stop()


async def test_an_enqueue_wakes_one_of_four_idle_pools(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 4, concurrency=4, poll_interval=QUIET)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        fetches = Fetches(pools)
        for i in range(5):
            await all_idle(redis, keys, pools)
            fetches.reset()
            before = {p.id: handed(p) for p in pools}
            async with Wakeups(redis, keys).listening() as wakeups:
                await enq.enqueue("w", {"i": i}, priority=i % 2)
                await until(lambda n=i: len(started) == n + 1)
                await all_idle(redis, keys, pools)
            # handed to one pool (lib/handoff.lua: the queue was empty), no wake-up message
            assert [p.id for p in pools if handed(p) > before[p.id]] == [started[-1]]
            assert wakeups.single == [] and wakeups.broadcast == 0
            assert fetches.fetching == 1  # before: all four fetched (every idle pool woken)


async def test_a_burst_spreads_over_the_idle_pools(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    gate = asyncio.Event()
    holders: set[str] = set()
    pools = []
    for _ in range(4):
        pool = WorkerPool.from_url(
            redis_url, namespace=namespace, concurrency=4, poll_interval=QUIET
        )
        pool.job("w")(_holder(pool, holders, gate))
        pools.append(pool)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        await enq.enqueue_many([("w", {"i": i}) for i in range(40)])
        # one pool is woken; each that fetches a full batch wakes the next (lua/fetch.lua)
        await until(lambda: len(holders) == 4)
        gate.set()


def _holder(
    pool: WorkerPool, holders: set[str], gate: asyncio.Event
) -> Callable[..., Awaitable[None]]:
    async def w(job: Job, i: int = 0) -> None:
        holders.add(pool.id)
        await gate.wait()

    return w


async def test_a_wakeup_lost_to_a_dead_pool_waits_for_the_next_fetch(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    poll = 0.5
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=poll)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        # a pool that registered as idle and died (kill -9): its mark lasts 2 poll intervals
        # + 1 s, and it is the freshest, so the enqueue's wake-up goes to it and is lost
        seconds, _micros = await redis.time()
        await redis.zadd(keys.idle_for("w"), {"deadpool": -(seconds * 1000 + 60_000)})
        async with Wakeups(redis, keys).listening() as wakeups:
            t0 = time.monotonic()
            await enq.enqueue("w")
            await until(lambda: len(started) == 1)
            waited = time.monotonic() - t0
        assert wakeups.single == ["deadpool"]
        # the live pool found it at its next fetch: within its poll interval (+ a fetch)
        assert waited < poll + 0.5


async def test_a_stale_mark_wakes_nobody_and_an_expired_one_is_passed_over(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 1, concurrency=2, poll_interval=QUIET)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        seconds, _micros = await redis.time()
        # an expired mark (scores are minus deadlines): the live pool is popped first
        await redis.zadd(keys.idle_for("w"), {"gone": -(seconds * 1000 - 5_000)})
        async with Wakeups(redis, keys).listening() as wakeups:
            await enq.enqueue("w")
            await until(lambda: len(started) == 1)
        assert wakeups.single == [] and handed(pools[0]) == 1  # (lib/handoff.lua)

        async def dropped() -> bool:
            return await redis.zscore(keys.idle_for("w"), "gone") is None

        # the live pool registered again (new to the ZSET): the expired mark was dropped then
        await until(dropped)


async def test_delayed_jobs_wake_one_pool_when_promoted(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pools, started = make_pools(redis_url, namespace, 3, concurrency=2, poll_interval=QUIET)
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        await enq.enqueue("w", delay=3600)
        fetches = Fetches(pools)
        async with Wakeups(redis, keys).listening() as wakeups:
            # promote as a pool's requeuer would, an hour on
            later = int(time.time() * 1000) + 3_601_000
            moved, _ = await Scripts(redis, keys).promote(["w"], later, 100)
            assert moved == 1
            await until(lambda: len(started) == 1)
            await all_idle(redis, keys, pools)
        assert len(wakeups.single) == 1 and wakeups.broadcast == 0
        assert fetches.fetching == 1


async def test_a_full_pool_hands_its_idle_mark_and_a_wakeup_on(
    redis: Redis, namespace: str
) -> None:
    """An empty fetch (what a pool marked idle does when it has no room left) takes the
    pool's marks away and wakes another idle pool when jobs wait."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    now_s, _ = await redis.time()
    for pool in ("a", "b"):
        await scripts.heartbeat(pool, b"{}", 60_000, "register")
        got = await scripts.fetch(pool, 0, 4, [("w", 0)])
        assert got is not None and not got
    assert await idle_count(redis, keys) == 2
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("w")  # wakes one of them (popped)
        await enq.enqueue("w")  # wakes the other
    assert await idle_count(redis, keys) == 0
    await redis.zadd(keys.idle_for("w"), {"b": -(now_s * 1000 + 60_000)})
    await redis.sadd(keys.idle, "a", "b")
    async with Wakeups(redis, keys).listening() as wakeups:
        got = await scripts.fetch("a", 0, 0, [("w", 0)])
        assert got is not None and not got
        await until(lambda: bool(wakeups.single))
    assert wakeups.single == ["b"]
    assert not await redis.sismember(keys.idle, "a")


async def test_a_pool_that_lost_its_lease_is_woken_under_its_new_id(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    """After a lease loss the pool carries on under a new id: it marks itself idle under that
    id and listens on that id's channel (the notifier subscribes anew)."""
    keys = Keys(namespace)
    pools, started = make_pools(
        redis_url, namespace, 1, concurrency=2, poll_interval=QUIET, heartbeat_interval=0.1,
        dead_timeout=5.0,
    )  # fmt: skip
    pool = pools[0]
    async with running(pools), Enqueuer(redis, namespace=namespace) as enq:
        await all_idle(redis, keys, pools)
        first = pool.id
        # a reaper found it dead (as after SIGSTOP): its lease is taken, noticed at a heartbeat
        await Scripts(redis, keys).reap(first, -(10**9), 3, b"{}", b"{}", [])
        await until(lambda: pool.id != first and pool.worker is not None)
        await all_idle(redis, keys, pools)  # marked and subscribed under the new id
        await enq.enqueue("w")
        await until(lambda: len(started) == 1, timeout=5)  # not QUIET: handed to it
        assert handed(pool) == 1  # (lib/handoff.lua: to the new id, the old one's is refused)


async def test_the_reaper_drops_the_idle_marks_of_a_dead_pool(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    # a pool that marked itself idle for "w", published its names, and died (kill -9)
    await scripts.heartbeat("ghost", b"{}", 60_000, "register")
    assert await scripts.fetch("ghost", 0, 4, [("w", 0)], idle_ms=600_000) == []
    await redis.set(keys.serves("ghost"), b'["w"]', px=60_000)
    assert await redis.zscore(keys.idle_for("w"), "ghost") is not None
    pools, _started = make_pools(
        redis_url, namespace, 1, concurrency=2, poll_interval=QUIET, dead_timeout=1.0,
        heartbeat_interval=0.1,
    )  # fmt: skip
    async with running(pools):

        async def dropped() -> bool:
            return await redis.zscore(keys.idle_for("w"), "ghost") is None

        await until(dropped, timeout=15)  # reaped after the dead timeout: its mark goes too
        assert await redis.zscore(keys.pools, "ghost") is None
