"""A pool's lease lost, or a remote quiet asked, while ``start()`` runs its startup hooks (the
pool registered, its components not yet built): the lost lease makes the start fail (it gives
up its registration; no rebirth under a new id, which would outlive a start given up), and a
remote request waits for the launch (before it, ``pool.worker`` may be a previous run's)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.errors import RedisUnavailableError
from tests.support.procs import live_pools


def _held_pool(redis_url: str, namespace: str) -> tuple[WorkerPool, list[str], asyncio.Event]:
    """A pool whose startup hook waits for ``hold``; the ids of the jobs it ran."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )
    ran: list[str] = []
    hold = asyncio.Event()
    pool.context["in_hook"] = asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.append(job.id)

    @pool.on_startup
    async def hook(ctx: dict) -> None:
        ctx["in_hook"].set()
        await hold.wait()

    @pool.on_shutdown
    def shut(ctx: dict) -> None:
        ctx["shutdowns"] = ctx.get("shutdowns", 0) + 1

    return pool, ran, hold


async def _start_into_hook(pool: WorkerPool) -> asyncio.Task[None]:
    in_hook: asyncio.Event = pool.context["in_hook"]
    in_hook.clear()
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(in_hook.wait(), 5)
    return starting


async def _nothing_runs_on(pool: WorkerPool, redis: Redis, namespace: str) -> None:
    running = [t.get_name() for t in pool._tasks if not t.done()]
    for name in ("_fetch_task", "_notifier_task"):
        task = getattr(pool, name, None)
        if task is not None and not task.done():
            running.append(task.get_name())
    assert running == [], "tasks of the start given up run on"
    assert pool._rebirth_task is None or pool._rebirth_task.done()
    assert pool.heartbeater is None or not pool.heartbeater._thread.is_alive()
    assert await live_pools(redis, namespace) == [], "a pool registered after the start"
    assert not pool.started
    assert pool._redis is None  # (the client it made closed, as by a stop)


@pytest.mark.parametrize("pause", [0.05, 0.0])
async def test_a_lease_lost_during_the_startup_hooks_then_the_start_cancelled(
    redis_url: str, namespace: str, redis: Redis, pause: float
) -> None:
    """A restarted pool object (its previous run's tasks done): nothing of the start runs on
    after it was cancelled (before: a rebirth registered a new id, heartbeated and ran jobs
    with ``pool.started`` False)."""
    pool, ran, hold = _held_pool(redis_url, namespace)
    hold.set()
    await pool.start()
    await pool.stop()
    hold.clear()
    starting = await _start_into_hook(pool)
    pool._lease_lost("lost in the test")  # (what the heartbeat thread reports)
    await asyncio.sleep(pause)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("work")
        await asyncio.sleep(1.5)  # (more than a registration anew would take)
    await _nothing_runs_on(pool, redis, namespace)
    assert ran == [], "a job ran after the start was given up"
    assert pool.context["shutdowns"] == 1  # (the first run's stop: the hook was cancelled)


async def test_a_lease_lost_during_the_startup_hooks_fails_the_start(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A fresh pool object: the start raises RedisUnavailableError once the hooks end, its
    registration gone (before: a rebirth raised AttributeError, the start went on and the pool
    never ran a job); a later start runs jobs."""
    pool, ran, hold = _held_pool(redis_url, namespace)
    starting = await _start_into_hook(pool)
    pool._lease_lost("lost in the test")
    await asyncio.sleep(0.3)
    hold.set()
    with pytest.raises(RedisUnavailableError, match="lost its lease while starting"):
        await starting
    await _nothing_runs_on(pool, redis, namespace)
    assert pool.context["shutdowns"] == 1  # (its startup hook had returned)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work")
    assert job is not None
    await pool.drain(10)
    assert ran == [job.id]
    assert pool.lease_losses == 0


async def test_a_remote_quiet_during_the_startup_hooks_applies_after_the_launch(
    redis_url: str, namespace: str
) -> None:
    """A restarted pool object: the remote quiet goes to the new worker once launched, a local
    ``quiet()`` during the hooks does nothing (before: both went to the previous run's worker
    and lease keeper, whose refused renewal started a rebirth whose tasks outlived ``stop()``)."""
    pool, _ran, hold = _held_pool(redis_url, namespace)
    hold.set()
    await pool.start()
    await pool.stop()
    hold.clear()
    starting = await _start_into_hook(pool)
    previous = pool.worker
    assert previous is not None
    await pool.quiet()  # (called during the hooks: nothing happens, as before a start)
    assert previous.quiet_since is None and not pool.quieted
    pool._remote_request("quiet:1")  # (what the heartbeat thread hands over)
    await asyncio.sleep(0.2)
    assert not pool.quieted
    hold.set()
    await starting
    await asyncio.wait_for(asyncio.gather(*pool._remote_tasks), 5)
    assert pool.quieted
    await pool.stop()
    me = asyncio.current_task()
    left = sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())
    assert pool.lease_losses == 0, "the quiet renewed the previous run's lease: a rebirth"
    assert left == [], "tasks outlive stop()"


async def test_the_previous_runs_lease_lost_during_the_startup_hooks_is_not_this_starts(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """A restarted pool object: a loss reported for the previous run's lease (its renewal
    refused: a call still made through that run's lease keeper) does not fail the new start."""
    pool, _ran, hold = _held_pool(redis_url, namespace)
    hold.set()
    await pool.start()
    previous = pool.lease
    await pool.stop()
    hold.clear()
    starting = await _start_into_hook(pool)
    assert previous is not None and previous.on_lost is not None and pool.lease is not previous
    previous.on_lost("the previous run's lease, lost in the test")
    await asyncio.sleep(0.1)
    hold.set()
    await starting
    try:
        assert pool.started and await live_pools(redis, namespace) == [pool.id]
    finally:
        await pool.stop()
    assert pool.lease_losses == 0
