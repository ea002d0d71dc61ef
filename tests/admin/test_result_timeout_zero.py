"""``result(timeout=0)`` (and a tiny timeout) answers for a job that ended, as Celery's
``get(timeout=0)``, RQ's and BullMQ's do: the job's stored state is looked at once, however
small the timeout. Before, the timeout cancelled the wait while it subscribed, before its first
look, and a finished job's ``result(timeout=0)`` raised "it has not ended"; a dead job's raised
the same instead of its failure. Every entry point goes through ``admin/events.wait_result``:
``Enqueuer.result``, ``Job.result``, ``Client.result``, ``SyncEnqueuer.result``,
``SyncClient.result`` (and a SyncEnqueuer's Job awaited)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from errands import (
    Client,
    Enqueuer,
    JobFailedError,
    RedisUnavailableError,
    SyncClient,
    SyncEnqueuer,
)
from errands.store.connection import connect
from errands.store.keys import Keys
from errands.store.records import Acked, Settle
from errands.store.scripts import Scripts
from tests.faults.proxy import FaultProxy

POOL = "p1"
TIMEOUTS = [0, 0.001, 0.02]


def _ms() -> int:
    return int(time.time() * 1000)


async def _fetched(redis: Redis, namespace: str, job_id: str) -> tuple[Scripts, str]:
    """Job ``job_id`` enqueued and fetched by POOL: its scripts and attempt token."""
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("walk", {}, job_id=job_id)
    (fetched,) = await scripts.fetch(POOL, _ms(), 1, [("walk", 0)]) or []
    return scripts, fetched.token


async def _finished(redis: Redis, namespace: str, job_id: str, result: bytes) -> None:
    scripts, token = await _fetched(redis, namespace, job_id)
    done = [Acked(job_id, "walk", result, _ms(), 86_400_000, 1, token)]
    assert await scripts.ack(POOL, done, False, _ms(), True) == []


async def _dead(redis: Redis, namespace: str, job_id: str) -> None:
    scripts, token = await _fetched(redis, namespace, job_id)
    keys, now = Keys(namespace), _ms()
    s = Settle(
        job_id, "walk", "dead", keys.dead, now, 1, dead_max=1000, history=True,
        ttl_ms=86_400_000, token=token, score_ms=now, counter="dead", error=b'{"error":"boom"}',
    )  # fmt: skip
    assert await scripts.settle_report(POOL, [s]) == [True]


@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_a_finished_job_answers_at_once(redis: Redis, namespace: str, timeout: float) -> None:
    await _finished(redis, namespace, "done-1", b'{"n":5}')
    async with (
        Client(redis, namespace=namespace) as client,
        Enqueuer(redis, namespace=namespace, strict=None) as enq,
    ):
        assert await client.result("done-1", timeout=timeout) == {"n": 5}
        assert await enq.result("done-1", timeout=timeout) == {"n": 5}
        job = await enq.enqueue("walk", {}, job_id="done-1")  # (its Job: existed)
        assert job is not None and job.existed
        assert await job.result(timeout=timeout) == {"n": 5}
        if timeout == 0:  # the look alone: nobody subscribed
            assert client.hub.subscriptions == 0 and enq.hub.subscriptions == 0


@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_a_dead_job_raises_its_failure_at_once(
    redis: Redis, namespace: str, timeout: float
) -> None:
    await _dead(redis, namespace, "dead-1")
    async with Client(redis, namespace=namespace) as client:
        with pytest.raises(JobFailedError, match="boom"):
            await client.result("dead-1", timeout=timeout)


async def test_a_job_not_ended_times_out_at_once(redis: Redis, namespace: str) -> None:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        job = await enq.enqueue("later", {}, delay=3600)
        assert job is not None
        t0 = time.monotonic()
        with pytest.raises(
            TimeoutError, match=rf"waited 0s for the result of job {job.id}: it has not ended "
            r"\(it is waiting or running\)"
        ):  # fmt: skip
            await job.result(timeout=0)
        assert time.monotonic() - t0 < 1.0
        assert enq.hub.subscriptions == 0 and enq.hub.subscribers == 0
        assert await redis.hget(Keys(namespace).listening, job.id) is None  # (no mark left)


def test_the_sync_entry_points(redis_url: str, namespace: str) -> None:
    async def setup() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await _finished(redis, namespace, "done-2", b"7")
            await _dead(redis, namespace, "dead-2")
        finally:
            await redis.aclose()

    asyncio.run(setup())
    with SyncClient(redis_url, namespace=namespace) as client:
        assert client.result("done-2", timeout=0) == 7
        with pytest.raises(JobFailedError):
            client.result("dead-2", timeout=0)
    with SyncEnqueuer(redis_url, namespace=namespace, strict=None) as enq:
        assert enq.result("done-2", timeout=0) == 7
        job = enq.enqueue("walk", {}, job_id="done-2")
        assert job is not None and job.existed
        assert asyncio.run(job.result(timeout=0)) == 7  # (awaited in another event loop)
        later = enq.enqueue("walk", {}, delay=3600)
        assert later is not None
        with pytest.raises(TimeoutError, match="it has not ended"):
            enq.result(later.id, timeout=0)


async def test_the_look_of_a_stalled_redis_is_bounded(redis_url: str, namespace: str) -> None:
    """Redis not answering: the one look is bounded by the client's socket timeout, and says
    Redis did not answer (not that the job has not ended)."""
    port = urlparse(redis_url).port
    assert port is not None
    with FaultProxy(port) as proxy:
        redis = connect(proxy.url, socket_timeout=0.3)
        try:
            async with Client(redis, namespace=namespace) as client:
                await redis.ping()  # (connected, then the line goes silent)
                proxy.blackhole(new_connections=True)
                t0 = time.monotonic()
                with pytest.raises(RedisUnavailableError, match="to look at job j1"):
                    await client.result("j1", timeout=0)
                assert time.monotonic() - t0 < 5.0
        finally:
            proxy.restore()
            await redis.aclose()


async def test_an_answer_that_comes_as_the_time_is_up_is_kept(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look answered, then the timeout fired while the wait unsubscribed (hub._leave
    awaits): the answer was lost to a TimeoutError saying the job "has not ended" (seen with
    timeout=0.001 once in five runs; here the leave takes longer than the time left)."""
    await _finished(redis, namespace, "done-3", b"3")
    await _dead(redis, namespace, "dead-3")
    async with Client(redis, namespace=namespace) as client:
        real = client.hub._leave

        async def slow_leave(sub: Any) -> None:
            try:
                await asyncio.sleep(0.5)  # (cancelled by the timeout: the time is up here)
            finally:
                await real(sub)

        monkeypatch.setattr(client.hub, "_leave", slow_leave)
        assert await client.result("done-3", timeout=0.2) == 3
        with pytest.raises(JobFailedError, match="boom"):
            await client.result("dead-3", timeout=0.2)
        assert client.hub.subscribers == 0
