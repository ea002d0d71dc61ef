"""``Client.quiet_pool`` quiets a ``python -m errands worker`` process from outside it (its
heartbeat reads the request): it takes no job enqueued after; ``resume_pool`` resumes it; SIGTERM
then stops it cleanly, and its request goes with its registration."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, live_pools, records


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def test_a_worker_process_quieted_and_resumed_remotely(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys, client = Keys(namespace), Client(redis, namespace=namespace)
    proc = procs.worker("timed:pool", redis_url, namespace)

    async def up() -> list[str]:
        return await live_pools(redis, namespace)

    [pool_id] = await eventually(up, 15, "the worker process to register")

    async def quiet(state: bool) -> bool:
        return [p.quiet for p in await client.worker_pools()] == [state]

    assert await client.quiet_pool(pool_id) is True
    await eventually(lambda: quiet(True), 5, "the pool to show as quiet")
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("work", {"seconds": 0.01})
        await asyncio.sleep(1.0)
        assert await records(redis, namespace, "starts") == []
        assert await redis.zscore(keys.queue("work"), job.id) is not None
        assert await client.resume_pool(pool_id) is True
        await eventually(lambda: quiet(False), 5, "the pool to resume")

        async def ran() -> bool:
            return [r["id"] for r in await records(redis, namespace, "starts")] == [job.id]

        await eventually(ran, 5, "the job to run once resumed")
    proc.send(signal.SIGTERM)
    code = await proc.wait(timeout=10)
    output = proc.output()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "quiet requested remotely" in output and "resume requested remotely" in output, output
    assert await live_pools(redis, namespace) == []
    assert not await redis.exists(keys.quiet_requests)
