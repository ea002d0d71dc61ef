"""Issue 12, defect 3: an enqueue whose reply is lost is re-sent by redis-py (same EVALSHA, same
job id) once the socket timeout passes. enqueue.lua stored and queued the job again although it
had run meanwhile: it ran twice, and (re-fetched while running) could leak a max_concurrency
slot. The re-sent call must store nothing and count nothing."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.connection import connect
from errands.store.keys import Keys

from .proxy import FaultProxy

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("slow", [False, True], ids=["finished", "running"])
async def test_an_enqueue_resent_after_a_lost_reply_runs_its_job_once(
    fault_redis_url: str, main: Redis, namespace: str, slow: bool
) -> None:
    """The job has finished (``finished``) or still runs (``running``: the same pool would
    fetch it again, run it twice at once, and count it twice in ``running``) when the re-send
    arrives, a second after the first send."""
    keys = Keys(namespace)
    port = int(fault_redis_url.rsplit(":", 1)[1].split("/")[0])
    runs: list[tuple[str, float, float]] = []
    pool = WorkerPool.from_url(fault_redis_url, namespace=namespace, concurrency=4)

    @pool.job("charge", max_concurrency=0 if slow else 1)
    async def charge(job: Job) -> None:
        began = time.monotonic()
        await asyncio.sleep(2.0 if slow else 0.05)
        runs.append((job.id, began, time.monotonic()))

    with FaultProxy(port) as proxy:
        enqueuer = Enqueuer(connect(proxy.url, socket_timeout=1.0), namespace=namespace)
        async with pool:
            # the script is loaded (a NOSCRIPT reply would make the first send a no-op), and
            # the connection the enqueue will use is open
            await enqueuer.enqueue("other")
            proxy.blackhole(replies_only=True)  # it runs in Redis, its reply is lost
            sent = time.monotonic()
            job = await enqueuer.enqueue("charge")  # answered by redis-py's re-send
            assert job is not None and time.monotonic() - sent >= 1.0
            assert not job.existed  # (a random id: the re-send found the first send's job)
            await asyncio.sleep(3.0)  # a second run would have started by now
            await pool.drain(timeout=10)
        await enqueuer.redis.aclose()
    assert [r[0] for r in runs] == [job.id]
    assert await main.hget(keys.running, "charge") == b"0"
    assert await main.hget(keys.stats, "processed") == b"1"
    assert await main.zcard(keys.queue("charge")) == 0
