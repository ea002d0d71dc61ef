"""Review probe: a remote quiet handed over while a restarted pool object runs its startup
hooks (_started True, self.worker still the previous run's) is applied to the old worker."""

from __future__ import annotations

import asyncio

from errands import Job, WorkerPool


async def test_a_remote_quiet_during_the_startup_hooks_of_a_restarted_pool(
    redis_url: str, namespace: str
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)
    hold = asyncio.Event()
    in_hook = asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    @pool.on_startup
    async def hook(ctx: dict) -> None:
        in_hook.set()
        await hold.wait()

    hold.set()
    await pool.start()
    await pool.stop()
    hold.clear()
    in_hook.clear()
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(in_hook.wait(), 5)
    pool._remote_request("quiet:1")  # (what the heartbeat thread hands over)
    await asyncio.sleep(0.2)
    hold.set()
    await starting
    await asyncio.sleep(0.2)
    pending = [t.get_name() for t in pool._remote_tasks if not t.done()]
    quieted = pool.quieted
    print("quieted:", quieted, "remote tasks pending:", pending)
    ids = pool.id, pool.lease_losses
    await pool.stop()
    await asyncio.sleep(0.2)
    me = asyncio.current_task()
    left = sorted(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())
    print("ids, lease losses:", ids, "tasks left after stop():", left)
    try:
        assert pool.lease_losses == 0, "the quiet renewed the previous run's lease: a rebirth"
        assert left == [], "tasks outlive stop()"
        assert quieted, "the quiet asked went to the previous run's worker"
    finally:
        for t in asyncio.all_tasks():
            if t is not me:
                t.cancel()
