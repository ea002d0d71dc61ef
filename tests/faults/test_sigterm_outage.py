"""SIGTERM while Redis is unreachable: the job whose outcome could not be written is neither lost
nor run twice at once. The process exits once its grace and its bounded waits are over; the job
stays in the pool's in-progress set, and once Redis is back another pool's reaper gives it back
(a recovery, as if the process had died) and it runs to its end."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.devserver import RedisServer
from errands.store.keys import Keys
from tests.faults.common import assert_nothing_stuck, report
from tests.support.procs import Procs, eventually, records


async def test_sigterm_during_an_outage_exits_and_the_job_is_recovered_once_redis_is_back(
    redis_server: Callable[..., RedisServer], procs: Procs, namespace: str
) -> None:
    server = redis_server(appendonly="yes", appendfsync="always")  # (its data kept)
    redis = Redis.from_url(server.url)
    try:
        worker = procs.worker("single:pool", server.url, namespace)  # (grace 5 s)
        await eventually(lambda: asyncio.sleep(0, " started: " in worker.output()), 15.0, "start")
        async with Enqueuer.from_url(server.url, namespace=namespace) as enqueuer:
            job = await enqueuer.enqueue("work", {"seconds": 1.0})
        assert job is not None

        async def started() -> bool:
            return len(await records(redis, namespace, "starts")) == 1

        await eventually(started, 10.0, "the job started")
        server.kill()  # the job ends meanwhile: its outcome cannot be written
        await asyncio.sleep(1.5)
        began = time.monotonic()
        worker.send(signal.SIGTERM)
        assert await worker.wait(40.0) == 0
        took = time.monotonic() - began
        server.start()
        await redis.aclose()
        redis = Redis.from_url(server.url)
        assert await records(redis, namespace, "intervals") == []  # (its end went unrecorded)
        procs.worker("single:pool", server.url, namespace)
        await assert_nothing_stuck(redis, Keys(namespace), ["work"], timeout=40.0)
        ends = await records(redis, namespace, "intervals")
        assert [r["id"] for r in ends] == [job.id], ends
        assert len(await records(redis, namespace, "starts")) == 2
    finally:
        await redis.aclose()
    report("SIGTERM while Redis is unreachable", grace_s=5.0, exit_s=took, runs=2)
    # the grace (5 s), then at most 5 s more for the outcome, then the flushes' bounded waits
    assert took < 30.0, f"exit took {took:.1f}s"
