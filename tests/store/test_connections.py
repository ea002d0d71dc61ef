"""A burst of concurrent enqueues waits for a free connection instead of failing."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, RedisUnavailableError
from errands.store.keys import Keys


async def test_a_thousand_concurrent_enqueues_all_succeed(
    redis_url: str, redis: Redis, namespace: str
) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await asyncio.gather(*[enqueuer.enqueue("x", {"i": i}) for i in range(1000)])
    assert all(job is not None for job in jobs)
    assert await redis.zcard(Keys(namespace).queue("x")) == 1000


async def test_an_enqueue_retries_then_raises_naming_the_server() -> None:
    """docs/enqueueing.md: errands' clients wait at most 5 s to connect and 15 s per command,
    and retry a failed command three times before RedisUnavailableError (a server that
    accepts every connection and closes it at once sees the call and at least its three
    retries: more, as an enqueue tries its held connection, then the general path, and
    redis-py retries a failed connect within a call too)."""
    accepted = 0

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        enqueuer = Enqueuer.from_url(f"redis://:hunter2@127.0.0.1:{port}/0", strict=None)
        kwargs = enqueuer.redis.connection_pool.connection_kwargs
        assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (5.0, 15.0)
        with pytest.raises(RedisUnavailableError, match=rf"redis://:\*\*\*@127.0.0.1:{port}/0"):
            await enqueuer.enqueue("x", {})
        await enqueuer.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert accepted >= 2 * 4  # (held connection, then general path: each 1 call + 3 retries)
