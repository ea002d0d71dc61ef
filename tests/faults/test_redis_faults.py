"""Scenarios 4 and 5 of issue 8: the Redis server under test is SIGKILLed and restarted (AOF,
``appendfsync always``) under continuous enqueueing and processing, its script cache is flushed,
and it is stalled for 15 s (``DEBUG SLEEP 15`` or SIGSTOP).

Bounds: no acknowledged enqueue is lost; both pools (the same processes) resume within 5 s of
Redis answering again; no job runs twice at once. An outage longer than the dead timeout (1.5 s
here) makes every pool give its lease up in time (issue 12: a pool that cannot renew its lease
abandons its jobs before a reaper could take them): they carry on under new ids, and the jobs
they abandoned run again once a reaper has taken the old leases.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, RedisUnavailableError
from errands.store.connection import connect
from errands.store.devserver import RedisServer
from tests.support.procs import Procs

from .common import (
    FAST,
    Fleet,
    Oracle,
    assert_nothing_stuck,
    duplicates,
    first_start_after,
    report,
)

pytestmark = pytest.mark.faults

RESUME_BOUND = 5.0


class Producer:
    """Enqueues jobs one by one until stopped; keeps the ids of acknowledged enqueues and
    counts the refused ones (RedisUnavailableError)."""

    def __init__(
        self, url: str, namespace: str, seconds: tuple[float, float], echo: bool = False
    ) -> None:
        self.url, self.namespace, self.seconds, self.echo = url, namespace, seconds, echo
        self.acknowledged: list[str] = []
        self.refused = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        rng = random.Random(4)
        async with Enqueuer.from_url(self.url, namespace=self.namespace) as enqueuer:
            while not self._stop.is_set():
                try:
                    seconds = rng.uniform(*self.seconds)
                    job = await enqueuer.enqueue("work", {"seconds": seconds, "echo": self.echo})
                    assert job is not None
                    self.acknowledged.append(job.id)
                    await asyncio.sleep(0.01)
                except RedisUnavailableError:
                    self.refused += 1
                    await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


@pytest.fixture
async def admin_of() -> AsyncIterator[Callable[[RedisServer], Redis]]:
    clients: list[Redis] = []

    def make(server: RedisServer) -> Redis:
        clients.append(connect(server.url))  # retries: it outlives restarts of the server
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def test_redis_killed_and_restarted(
    redis_server: Callable[..., RedisServer],
    admin_of: Callable[[RedisServer], Redis],
    procs: Procs,
    oracle: Oracle,
    oracle_url: str,
    namespace: str,
) -> None:
    """Scenario 4, and SCRIPT FLUSH afterwards."""
    server = redis_server(appendonly="yes", appendfsync="always")
    fleet = Fleet(procs, server.url, namespace, oracle_url, **FAST, FAULT_CONCURRENCY="10")
    keys = fleet.keys
    admin = admin_of(server)
    a, b = fleet.start(), fleet.start()
    pools = await fleet.wait_ready(admin)
    producer = Producer(server.url, namespace, (0.05, 0.3))
    producer.start()
    await asyncio.sleep(2.0)

    killed_at = time.time()
    server.kill()
    await asyncio.sleep(2.0)
    server.start()
    back_at = time.time()
    acknowledged_before = len(producer.acknowledged)
    await asyncio.sleep(3.0)
    refused_during_outage = producer.refused

    # SCRIPT FLUSH: every script (the heartbeat thread's too) is reloaded on NOSCRIPT
    flushed_at = time.time()
    await admin.script_flush()
    await asyncio.sleep(1.5)
    await producer.stop()
    ids = producer.acknowledged
    await oracle.wait_ended(ids, timeout=30)

    starts = await oracle.starts()
    resume = {p.pid: first_start_after(starts, p.pid, back_at) for p in (a, b)}
    after_flush = {p.pid: first_start_after(starts, p.pid, flushed_at) for p in (a, b)}
    beats = await admin.zrange(keys.pools, 0, -1, withscores=True)
    # the pools gave their leases up during the 2 s outage and run under new ids
    assert len(beats) == 2 and not {m.decode() for m, _ in beats} & set(pools.values())
    assert all(score / 1000 > flushed_at for _m, score in beats), "heartbeats stopped"
    assert [p.poll() for p in (a, b)] == [None, None], fleet.logs()
    dups = duplicates(starts)
    await assert_nothing_stuck(admin, keys, ["work"])
    report(
        "4. Redis SIGKILLed and restarted (AOF always), then SCRIPT FLUSH",
        outage_s=back_at - killed_at,
        acknowledged=len(ids),
        acknowledged_before_restart=acknowledged_before,
        refused_during_outage=refused_during_outage,
        lost=0,
        duplicates=len(dups),
        resume_s=max(resume.values()),
        resume_after_flush_s=max(after_flush.values()),
        bound_s=RESUME_BOUND,
    )
    assert refused_during_outage > 0
    assert max(resume.values()) < RESUME_BOUND, fleet.logs()
    assert max(after_flush.values()) < RESUME_BOUND, fleet.logs()
    assert not dups


@pytest.mark.parametrize("how", ["DEBUG SLEEP", "SIGSTOP"])
async def test_redis_stalled(
    how: str,
    redis_server: Callable[..., RedisServer],
    admin_of: Callable[[RedisServer], Redis],
    procs: Procs,
    oracle: Oracle,
    oracle_url: str,
    namespace: str,
) -> None:
    """Scenario 5: Redis stalled for 15 s while two pools (dead after 1.5 s without a
    heartbeat) run jobs: both give their leases up in time (no job runs twice at once) and
    resume within 5 s under new ids; the jobs they abandoned run again."""
    server = redis_server(enable_debug_command="yes")
    fleet = Fleet(procs, server.url, namespace, oracle_url, **FAST, FAULT_CONCURRENCY="4")
    keys = fleet.keys
    admin = admin_of(server)
    a, b = fleet.start(), fleet.start()
    pools = await fleet.wait_ready(admin)
    async with Enqueuer.from_url(server.url, namespace=namespace) as enqueuer:
        ids = [j.id for j in await enqueuer.enqueue_many([("work", {"seconds": 0.3})] * 150)]
    await asyncio.sleep(2.0)  # the reapers are armed: their own beats are healthy for > 1.5 s

    stalled_at = time.time()
    if how == "DEBUG SLEEP":
        sleeper = Redis.from_url(server.url, socket_timeout=60)
        await sleeper.execute_command("DEBUG", "SLEEP", "15")
        await sleeper.aclose()
    else:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(15.0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    back_at = time.time()
    await oracle.wait_ended(ids, timeout=40)

    starts = await oracle.starts()
    resume = {p.pid: first_start_after(starts, p.pid, back_at) for p in (a, b)}
    registered = {m.decode() for m in await admin.zrange(keys.pools, 0, -1)}
    dups = duplicates(starts)
    recovered = await admin.hlen(keys.recoveries)
    reaped_logs = fleet.logs(tail=100_000).count("reaped dead pool")
    await assert_nothing_stuck(admin, keys, ["work"])
    report(
        f"5. Redis stalled 15 s ({how})",
        stall_s=back_at - stalled_at,
        jobs=len(ids),
        pools_reaped=reaped_logs,
        recovered=recovered,
        duplicates=len(dups),
        lost=0,
        resume_s=max(resume.values()),
        bound_s=RESUME_BOUND,
    )
    assert len(registered) == 2 and not registered & set(pools.values()), registered
    assert [p.poll() for p in (a, b)] == [None, None], fleet.logs()
    assert not dups, fleet.logs()
    assert max(resume.values()) < RESUME_BOUND, fleet.logs()
