"""Per-job event channels (issue 15): a ``result()`` waiter hears its job's events on the job's
own channel, and while only waiters listen, the jobs nobody watches publish nothing; an
``events()`` stream still hears every job on the namespace's channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from tests.support.client_env import until


class Published:
    """Every event message published in a namespace, by channel (a pattern subscription)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.messages: list[tuple[str, dict[str, Any]]] = []

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Published]:
        async with self.redis.pubsub() as pubsub:
            await pubsub.psubscribe(self.keys.events_channel + "*")
            reader = asyncio.create_task(self._read(pubsub))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                channel = message["channel"].decode()
                self.messages.append((channel, orjson.loads(message["data"])))

    def ids(self) -> set[str]:
        return {event["id"] for _channel, event in self.messages}


async def test_only_watched_jobs_publish_and_a_waiter_hears_its_job(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    gate = asyncio.Event()

    @pool.job("w")
    async def w(job: Job, i: int = 0) -> int:
        if i == 21:
            await gate.wait()  # (finished once its waiter listens)
        return i * 2

    client = Client(redis, namespace=namespace)
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        later = await enq.enqueue("w", {"i": -1}, delay=3600)
        assert later is not None
        async with Published(redis, keys).watching() as published:
            # a waiter of a job that does not run: the 20 jobs that run publish nothing
            waiter = asyncio.create_task(client.result(later.id, timeout=60))
            await until(lambda: client.hub.subscribers == 1)
            await until(lambda: redis.hexists(keys.listening, later.id))
            jobs = [await enq.enqueue("w", {"i": i}) for i in range(20)]
            await pool.drain(timeout=20)
            await asyncio.sleep(0.1)  # a message on its way would land meanwhile
            assert published.messages == []  # before: 60 (enqueued, started, finished each)
            # a waiter of a job hears its events on the job's own channel, and gets its result
            job = await enq.enqueue("w", {"i": 21})
            assert job is not None
            # (the job may start before its waiter listens: handed to the idle pool at once)
            result = asyncio.create_task(client.result(job.id, timeout=20))
            await until(lambda: redis.hexists(keys.listening, job.id))
            gate.set()
            assert await result == 42
            await until(
                lambda: (
                    ("finished", job.id) in {(e["event"], e["id"]) for _c, e in published.messages}
                )
            )
            assert published.ids() == {job.id}
            assert {c for c, _e in published.messages} == {client.hub.channel(job.id)}
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        assert all(j is not None for j in jobs)
    await client.aclose()


async def test_a_stream_hears_every_job_on_the_namespace_channel(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)

    @pool.job("w")
    async def w(job: Job) -> None:
        return None

    client = Client(redis, namespace=namespace)
    async with pool, Enqueuer(redis, namespace=namespace) as enq:
        async with client.events() as events, Published(redis, keys).watching() as published:
            ids = [j.id for j in await enq.enqueue_many([("w", {}) for _ in range(5)]) if j]
            finished: set[str] = set()
            async for event in events:
                if event["event"] == "finished":
                    finished.add(event["id"])
                if finished == set(ids):
                    break
            assert {c for c, _e in published.messages} == {keys.events_channel}
        # the stream gone, its mark stays until it expires (a hub trims it): like the old key
        assert await redis.hexists(keys.listening, "*")
    await client.aclose()
