"""Waiting for results and following events through one shared subscription per client (issue
12, defect 7): 1,000 concurrent waiters on one client; a waiter re-checks its job's stored state
on a timer whatever the event traffic (issue 14, item 1); ``result()`` and ``events()`` ride
out a Redis restart (issue 14, item 10); the TimeoutError says what it waited for (issue 16)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import (
    Client,
    Enqueuer,
    JobNotFoundError,
    RedisUnavailableError,
    WorkerPool,
)
from errands.store.connection import connect
from errands.store.keys import Keys
from tests.support.client_env import until
from tests.support.infra.nodes import Node, free_port
from tests.support.invariants import assert_invariants


async def subscribers(redis: Redis, keys: Keys) -> int:
    """How many connections are subscribed to the namespace's event channel."""
    [(_channel, count)] = await redis.pubsub_numsub(keys.events_channel)
    return int(count)


async def test_a_thousand_waiters_share_one_subscription(redis_url: str, namespace: str) -> None:
    keys = Keys(namespace)
    client = Client.from_url(redis_url, namespace=namespace)  # at most 100 connections
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    pool = WorkerPool(connect(redis_url), namespace=namespace, concurrency=50)
    gate = asyncio.Event()
    waiters: list[asyncio.Task[Any]] = []

    @pool.job("double")
    async def double(x: int) -> int:
        await gate.wait()
        return 2 * x

    try:
        jobs = await enqueuer.enqueue_many([("double", {"x": i}) for i in range(1000)])
        waiters = [asyncio.create_task(client.result(j.id, timeout=120)) for j in jobs]
        await until(lambda: client.hub.subscribers == 1000, timeout=30)
        await until(lambda: client.hub.subscriptions == 1, timeout=30)
        # one connection, subscribed to each job's channel (not to every job's events)
        channels = [client.hub.channel(j.id) for j in jobs]
        await until(lambda: _listeners(client.redis, channels, 1000), timeout=30)
        assert await subscribers(client.redis, keys) == 0
        pubsubs = [c for c in await client.redis.client_list(_type="pubsub") if c["sub"] != "0"]
        assert [c["sub"] for c in pubsubs if int(c["sub"]) >= 1000] == ["1000"]
        assert not any(w.done() for w in waiters)
        async with pool:
            gate.set()
            results = await asyncio.wait_for(asyncio.gather(*waiters), 120)
            await pool.drain(timeout=30)
        assert results == [2 * i for i in range(1000)]
        assert client.hub.subscriptions == 1
        # the last waiter gone, the subscription is closed
        assert client.hub.subscribers == 0
        await until(lambda: _listeners(client.redis, channels, 0))
        # and the client still answers commands
        assert await client.job(jobs[0].id) is not None
        await assert_invariants(client.redis, namespace, drained=True)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await client.aclose()
        await enqueuer.aclose()
        await pool.redis.aclose()


async def _listeners(redis: Redis, channels: list[str], expected: int) -> bool:
    """Whether ``expected`` of ``channels`` have one listener each (the rest none)."""
    counts = await redis.pubsub_numsub(*channels)
    return sum(int(n) for _c, n in counts) == expected and all(int(n) <= 1 for _c, n in counts)


async def test_a_job_that_ends_without_an_event_is_answered_whatever_the_traffic(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    client = Client(redis, namespace=namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    job = await enqueuer.enqueue("never_served", {}, delay=3600)
    assert job is not None
    waiter = asyncio.create_task(client.result(job.id, timeout=30))
    await until(lambda: client.hub.subscribers == 1)
    stop = asyncio.Event()

    async def traffic() -> None:  # an event of other jobs every 20 ms
        while not stop.is_set():
            event = {"event": "progress", "id": "other", "name": "x", "checkin": "."}
            await redis.publish(keys.events_channel, orjson.dumps(event))
            await asyncio.sleep(0.02)

    noise = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.3)
        # the job ends silently: its envelope and its place go, and no event says so
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.jobs, job.id)
            pipe.zrem(keys.scheduled("never_served"), job.id)
            await pipe.execute()
        t0 = time.monotonic()
        with pytest.raises(JobNotFoundError):
            await waiter
        assert time.monotonic() - t0 < 5.0  # a re-check every 1-1.25 s, not a timeout of 30 s
    finally:
        stop.set()
        await noise
        await client.aclose()


async def test_the_timeout_says_what_it_waited_for(redis: Redis, namespace: str) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    job = await enqueuer.enqueue("later", {}, delay=3600)
    assert job is not None
    with pytest.raises(TimeoutError, match=rf"waited 0.2s for the result of job {job.id}: it has"):
        await job.result(timeout=0.2)
    assert enqueuer.hub.subscribers == 0
    await enqueuer.aclose()


# -- a Redis restart --------------------------------------------------------------------------
@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A server of its own with an append-only file written at every command."""
    server = Node(tmp_path, "restarted", ["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def on_node(node: Node, namespace: str) -> AsyncIterator[tuple[Client, Enqueuer]]:
    url = f"redis://{node.addr}/0"
    client = Client.from_url(url, namespace=namespace)
    enqueuer = Enqueuer.from_url(url, namespace=namespace, strict=None)
    yield client, enqueuer
    await client.aclose()
    await enqueuer.aclose()


async def test_result_and_events_ride_out_a_redis_restart(
    node: Node, namespace: str, on_node: tuple[Client, Enqueuer]
) -> None:
    client, enqueuer = on_node
    job = await enqueuer.enqueue("work", {"x": 1})
    assert job is not None
    waiter = asyncio.create_task(client.result(job.id, timeout=60))
    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async with client.events() as events:
            async for event in events:
                seen.append(event)
                if event.get("event") == "finished":
                    return

    follower = asyncio.create_task(follow())
    await until(lambda: client.hub.subscribers == 2 and client.hub.subscriptions == 1)
    node.kill()
    await until(lambda: not client.hub._subscribed)
    node.start()
    await until(lambda: client.hub.subscriptions >= 2, timeout=15)
    pool = WorkerPool(connect(f"redis://{node.addr}/0"), namespace=namespace)

    @pool.job("work")
    async def work(x: int) -> int:
        return x + 41

    try:
        async with pool:
            assert await asyncio.wait_for(waiter, 30) == 42
            await asyncio.wait_for(follower, 30)
            await pool.drain(timeout=10)
        assert ("finished", job.id) in [(e["event"], e["id"]) for e in seen]
        await assert_invariants(pool.redis, namespace, drained=True)
    finally:
        await pool.redis.aclose()


async def test_waiting_raises_redis_unavailable_when_redis_stays_down(
    node: Node, on_node: tuple[Client, Enqueuer]
) -> None:
    client, enqueuer = on_node
    job = await enqueuer.enqueue("work", {})
    assert job is not None
    client.hub.outage_limit = enqueuer.hub.outage_limit = 1.0
    waiter = asyncio.create_task(client.result(job.id))
    stream = client.events()
    await stream.start()
    node.kill()
    with pytest.raises(RedisUnavailableError, match=f"cannot reach Redis at redis://{node.addr}"):
        await asyncio.wait_for(waiter, 20)
    with pytest.raises(RedisUnavailableError):
        await asyncio.wait_for(anext(stream), 20)
    await stream.aclose()
    with pytest.raises(RedisUnavailableError):
        await asyncio.wait_for(job.result(), 20)


async def test_client_methods_raise_redis_unavailable(namespace: str) -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    async with Client.from_url(url, namespace=namespace) as client:
        where = re.escape("cannot reach Redis at redis://:***@127.0.0.1")
        calls = [lambda: client.job("x"), client.queues, lambda: client.cancel("x")]
        for call in [*calls, client.schedules, client.paused]:
            with pytest.raises(RedisUnavailableError, match=where):
                await call()
        client.hub.outage_limit = 0.5
        with pytest.raises(RedisUnavailableError):
            await client.result("x", timeout=20)
    # a client made on a redis-py client names the server too
    raw = Redis(host="127.0.0.1", port=free_port())
    with pytest.raises(RedisUnavailableError, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
        await Client(raw, namespace=namespace).pause("x")
    await raw.aclose()


async def test_a_passing_error_does_not_count_as_an_outage_later(
    redis: Redis, namespace: str
) -> None:
    """A waiter's look at its job that failed once, long ago, does not make a later single
    failure look like an outage of that length."""
    client = Client(redis, namespace=namespace)
    client.hub.outage_limit = 0.5
    async with client.hub.subscribe("x"):
        client.hub.failed(ConnectionError("a blip"))
        assert client.hub._down_since is not None
        client.hub.answered()
        assert client.hub._down_since is None  # the next failure starts a new count
    await client.aclose()
