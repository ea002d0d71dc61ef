"""SIGTSTP quiets a ``python -m errands worker`` process (as Sidekiq's TSTP): its running job
completes and is acknowledged, it takes no job enqueued after, it heartbeats on past the dead
timeout (another pool's reaper leaves it alone), SIGCONT does not resume it, and SIGTERM then
stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools, records

DEAD_TIMEOUT = 1.0  # tests.support.apps.timed's


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


def _watcher(redis_url: str, namespace: str) -> WorkerPool:
    """A pool of another job name, whose reaper takes a pool whose heartbeats stopped."""
    watcher = WorkerPool.from_url(
        redis_url, namespace=namespace, heartbeat_interval=0.25, dead_timeout=DEAD_TIMEOUT
    )

    @watcher.job("other")
    async def other(job: Job) -> None:
        pass

    return watcher


async def test_sigtstp_quiets_the_worker_until_sigterm(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    watcher = _watcher(redis_url, namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        slow = await enqueuer.enqueue("work", {"seconds": 2.0})
        proc = procs.worker("timed:pool", redis_url, namespace)

        async def started() -> list[str]:
            return [r["id"] for r in await records(redis, namespace, "starts")]

        await eventually(started, 15, "the slow job to start in the worker process")
        [pool_id] = await live_pools(redis, namespace)
        async with watcher:
            proc.send(signal.SIGTSTP)

            async def quiet() -> bool:
                return any(p.id == pool_id and p.quiet for p in await client.worker_pools())

            await eventually(quiet, 5, "the pool to show as quiet")
            quieted = time.monotonic()
            proc.send(signal.SIGTSTP)  # (quiet twice is quiet once)
            proc.send(signal.SIGCONT)  # (follows every SIGSTOP: does not resume)
            later = await enqueuer.enqueue_many([("work", {"seconds": 0.01})] * 3)

            async def acked() -> bool:
                return await redis.hget(keys.jobs, slow.id) is None

            await eventually(acked, 10, "the slow job to complete and be acknowledged")
            assert [r["id"] for r in await records(redis, namespace, "intervals")] == [slow.id]
            await asyncio.sleep(max(0.0, quieted + 2 * DEAD_TIMEOUT - time.monotonic()))
            assert await started() == [slow.id]  # nothing enqueued after was taken
            assert await redis.zcard(keys.queue("work")) == 3
            assert pool_id in await live_pools(redis, namespace)  # not reaped
            [info] = [p for p in await client.worker_pools() if p.id == pool_id]
            assert info.quiet and time.time() - info.last_beat < DEAD_TIMEOUT
            assert await redis.hget(keys.stats, "processed") == b"1"
        proc.send(signal.SIGTERM)
        code = await proc.wait(timeout=10)
    output = proc.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert output.count("is quiet") == 1, output
    assert "takes jobs again" not in output, output  # (resume()'s line)
    assert await live_pools(redis, namespace) == []
    assert {m.decode() for m in await redis.zrange(keys.queue("work"), 0, -1)} == {
        job.id for job in later
    }
    assert await redis.zcard(keys.in_progress(pool_id)) == 0


async def test_sigtstp_to_the_supervisor_quiets_every_child(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    client = Client(redis, namespace=namespace)
    proc = procs.worker("single:pool", redis_url, namespace, "--processes", "2")

    async def both_up() -> bool:
        return len(await live_pools(redis, namespace)) == 2

    await eventually(both_up, 15, "two worker processes to register")
    proc.send(signal.SIGTSTP)

    async def both_quiet() -> bool:
        pools = await client.worker_pools()
        return len(pools) == 2 and all(p.quiet for p in pools)

    await eventually(both_quiet, 5, "both children to show as quiet")
    assert proc.poll() is None  # the supervisor is not suspended either
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work")
    await asyncio.sleep(0.5)
    assert await redis.zscore(Keys(namespace).queue("work"), job.id) is not None
    proc.send(signal.SIGTERM)
    assert await proc.wait(15) == 0, proc.output()
    assert proc.output().count("is quiet") == 2, proc.output()
    assert await live_pools(redis, namespace) == []
