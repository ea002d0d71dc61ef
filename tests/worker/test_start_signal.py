"""A signal to a worker process (``errands worker``, ``pool.run()``) while its pool is still
starting (a slow or hung ``on_startup`` hook): the start is given up at once, as Sidekiq and
Celery do, instead of the stop waiting for the start to end (and ``docker stop`` or Ctrl-C
waiting for the orchestrator's kill). The hook is cancelled, the pool's registration removed,
no job is fetched, and the process exits with the status of a signal stop (0)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Job, WorkerPool
from errands.store.keys import Keys
from tests.faults.proxy import FaultProxy
from tests.support.procs import Procs, eventually, live_pools

from .test_thread_stop import _true, enqueue


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_during_a_hung_startup_hook_ends_the_start_at_once(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, sig: signal.Signals
) -> None:
    keys = Keys(namespace)
    job_id = await enqueue(redis_url, namespace, "work", 0.05)
    env = {"TEST_GRACE": "30", "TEST_STARTUP_HANGS": "1", "TEST_SHUTDOWN_HANGS": "1"}
    proc = procs.worker("threads:pool", redis_url, namespace, env=env)
    await eventually(lambda: _true("warm_cache: waiting" in proc.output()), 15, "the hook")
    [doomed] = await live_pools(redis, namespace)  # registered before its hooks run
    began = time.monotonic()
    proc.send(sig)
    assert await proc.wait(timeout=20) == 0, proc.output()
    took = time.monotonic() - began
    output = proc.output()
    assert took < 3.0, f"exited {took:.2f}s after the signal\n{output}"
    assert "warm_cache: cancelled" in output, output
    assert "flush_ledger" not in output, output  # no on_shutdown hook ran
    assert "received while the pool starts: the start is given up" in output, output
    assert await live_pools(redis, namespace) == []
    assert await redis.exists(keys.pool_info(doomed)) == 0
    assert await redis.zcard(keys.in_progress(doomed)) == 0
    assert [m.decode() for m in await redis.zrange(keys.queue("work"), 0, -1)] == [job_id]


async def test_a_start_cancelled_while_it_registers_leaves_no_registration(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """What the signal does while the first heartbeat (in a thread: it cannot be cancelled)
    registers the pool: the start waits for that thread, then takes the registration away; the
    heartbeat thread ran on, beating for a pool that never started."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    starting = asyncio.create_task(pool.start())
    while pool.heartbeater is None:  # (the first beat's thread is on its way)
        await asyncio.sleep(0)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert not pool.started
    # (a real thread, no clock to advance: 4 heartbeat intervals for it to show itself)
    await asyncio.sleep(1.0)
    heartbeater = pool.heartbeater
    assert heartbeater is not None and not heartbeater._thread.is_alive()
    assert await live_pools(redis, namespace) == []
    assert await redis.exists(Keys(namespace).pool_info(pool.id)) == 0
    assert pool._redis is None  # (the client it made closed, as by a stop)


async def test_the_end_of_the_grace_asked_while_the_pool_registers_is_kept(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    """``end_grace()`` (a second signal) while ``start()`` checks Redis or registers the pool
    was lost: the start replaced the event it set, and the stop then waited the whole grace."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, shutdown_grace=30, heartbeat_interval=0.25
    )
    began = asyncio.Event()

    @pool.job("work")
    async def work(job: Job, seconds: float) -> None:
        began.set()
        await asyncio.sleep(seconds)

    job_id = await enqueue(redis_url, namespace, "work", 60)
    starting = asyncio.create_task(pool.start())
    while pool.heartbeater is None:  # (registering: the first beat's thread is on its way)
        await asyncio.sleep(0)
    pool.end_grace()
    await starting
    await asyncio.wait_for(began.wait(), 10)
    stopped = time.monotonic()
    await asyncio.wait_for(pool.stop(), 10)  # (no grace: not the 30 s)
    assert time.monotonic() - stopped < 3.0
    keys = Keys(namespace)
    assert [m.decode() for m in await redis.zrange(keys.queue("work"), 0, -1)] == [job_id]


async def test_a_signal_while_redis_does_not_answer_at_start_ends_the_start_at_once(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """Redis does not answer (every connection black-holed) while the worker checks it at
    start: its PING times out after 15 s, and is retried; a SIGTERM meanwhile ends the start at
    once, where the process ran on (still running 40 s after the signal, before this fix)."""
    port = int(redis_url.rpartition(":")[2].partition("/")[0])
    with FaultProxy(port) as proxy:
        proxy.blackhole(new_connections=True)
        proc = procs.worker("threads:pool", proxy.url, namespace, env={"TEST_GRACE": "30"})
        await eventually(lambda: _true(proxy.accepted > 0), 15, "the worker to connect")
        await asyncio.sleep(0.5)  # (its PING on its way: a real process, no clock to advance)
        began = time.monotonic()
        proc.send(signal.SIGTERM)
        assert await proc.wait(timeout=40) == 0, proc.output()
        took = time.monotonic() - began
    output = proc.output()
    assert took < 3.0, f"exited {took:.2f}s after the signal\n{output}"
    assert "SIGTERM received while the pool starts: the start is given up" in output, output
    assert await live_pools(redis, namespace) == []
