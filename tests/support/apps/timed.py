"""Worker app with short failure-detection timings (used by the concurrency, shutdown and
recovery tests).
``python -m errands worker tests.support.apps.timed:pool --redis URL --namespace NS``."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import time

import redis

from errands import Job, WorkerPool

from . import UNSET_URL, record, record_key, timed

pool = WorkerPool(
    url=UNSET_URL,
    concurrency=4,
    shutdown_grace=0.5,
    heartbeat_interval=0.25,
    dead_timeout=1.0,
    max_recoveries=2,
)


@pool.job("work")
async def work(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


@pool.job("serial", max_concurrency=1)
async def serial(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


@pool.job("capped", max_concurrency=3)
async def capped(job: Job, seconds: float = 0.05) -> None:
    await timed(pool, job, seconds)


@pool.job("sync_work")
def sync_work(job: Job, seconds: float = 0.05) -> None:
    """A plain def (runs in a thread): records its start with a blocking client, then sleeps."""
    assert pool.url is not None
    with redis.Redis.from_url(pool.url) as client:
        client.rpush(record_key(pool.namespace, "starts"), f'{{"id":"{job.id}","t":{time.time()}}}')
    time.sleep(seconds)


@pool.job("die")
async def die(job: Job) -> None:
    """Kill this worker process mid-job, every time (a poison job)."""
    await timed(pool, job, 0.0)
    os.kill(os.getpid(), signal.SIGKILL)


@pool.job("progress")
async def progress(job: Job, seconds: float = 6.0) -> None:
    """Check in and record progress every 0.1 s for ``seconds`` (a long async job)."""
    started = time.time()
    await record(pool, "starts", job, t=started)
    step = 0
    while time.time() - started < seconds:
        step += 1
        accepted = await job.checkin(f"step {step}")
        await record(pool, "progress", job, t=time.time(), step=step, accepted=accepted)
        await asyncio.sleep(0.1)
    await record(pool, "intervals", job, start=started, end=time.time())


@pool.job("gil")
async def gil(job: Job, seconds: float = 3.0, after: float = 1.0) -> None:
    """Hold the GIL for ``seconds`` in one C call (as a long sorted() or regex would), then
    carry on for ``after`` seconds."""
    started = time.time()
    await record(pool, "starts", job, t=started)
    libc = ctypes.PyDLL(None)  # a PyDLL call keeps the GIL: every other thread stops
    libc.usleep(int(seconds * 1_000_000))
    await record(pool, "resumed", job, t=time.time())
    await asyncio.sleep(after)
    await record(pool, "intervals", job, start=started, end=time.time())
