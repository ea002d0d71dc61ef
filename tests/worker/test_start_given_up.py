"""A start given up (cancelled: a SIGINT/SIGTERM to a worker process that is still starting) or
failing: the Redis client the pool made itself (from a URL) is closed as a stop closes it, a
client passed in is left open; and the ``on_shutdown`` hooks run when every ``on_startup`` hook
had returned (what they opened is closed), not when one of them failed or was cancelled."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.errors import RedisUnavailableError
from tests.support.procs import eventually, live_pools


async def named_connections(redis: Redis, name: str) -> int:
    return sum(c.get("name") == name for c in await redis.client_list())


def _pool(url_or_client: str | Redis, namespace: str) -> tuple[WorkerPool, list[str]]:
    """A pool whose startup hooks (``opened``, then ``warmed``) may hang or fail: set
    ``context["hang"]`` / ``context["fail"]`` to the hook's name; ``events`` says what ran."""
    if isinstance(url_or_client, str):
        pool = WorkerPool.from_url(url_or_client, namespace=namespace, heartbeat_interval=0.25)
    else:
        pool = WorkerPool(url_or_client, namespace=namespace, heartbeat_interval=0.25)
    events: list[str] = []
    pool.context["in_hook"] = asyncio.Event()

    async def step(name: str, context: dict[str, Any]) -> None:
        if context.get("fail") == name:
            raise ConnectionRefusedError(f"{name}: the database is down")
        if context.get("hang") == name:
            context["in_hook"].set()
            await asyncio.Event().wait()
        events.append(name)

    @pool.on_startup
    async def opened(context: dict[str, Any]) -> None:
        await step("opened", context)

    @pool.on_startup
    async def warmed(context: dict[str, Any]) -> None:
        await step("warmed", context)

    @pool.on_shutdown
    async def closed(context: dict[str, Any]) -> None:
        events.append("closed")

    @pool.job("work")
    async def work(job: Job) -> None:
        events.append("job")

    return pool, events


async def _given_up(pool: WorkerPool, how: str) -> None:
    """Start ``pool`` and give the start up: ``cancelled`` in a hanging hook, or ``failed``."""
    if how == "failed":
        pool.context["fail"] = "warmed"
        with pytest.raises(ConnectionRefusedError):
            await pool.start()
        return
    pool.context["hang"] = "warmed"
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(pool.context["in_hook"].wait(), 5)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_a_start_given_up_closes_the_client_the_pool_made(
    redis_url: str, namespace: str, redis: Redis, how: str
) -> None:
    """Its connections (and the heartbeat's) stayed open until the process exited: an app
    that retries a failing start leaked some on every try."""
    sep = "&" if "?" in redis_url else "?"
    pool, events = _pool(f"{redis_url}{sep}client_name={namespace}", namespace)
    await _given_up(pool, how)
    assert not pool.started and events == ["opened"]
    await eventually(
        lambda: _none(named_connections(redis, namespace)), 5, "the pool's connections closed"
    )
    assert pool._redis is None  # (as after a stop: a later start connects anew)
    pool.context.pop("fail", None)
    pool.context.pop("hang", None)
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("work")
    await pool.drain(10)
    assert events[-3:] == ["warmed", "job", "closed"]
    await eventually(lambda: _none(named_connections(redis, namespace)), 5, "closed again")


async def _none(count: Any) -> bool:
    return await count == 0


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_a_start_given_up_leaves_a_client_passed_in_open(
    redis_url: str, namespace: str, how: str
) -> None:
    client = Redis.from_url(redis_url)
    try:
        pool, _events = _pool(client, namespace)
        await _given_up(pool, how)
        assert pool.redis is client
        assert await client.ping()
        assert await live_pools(client, namespace) == []
    finally:
        await client.aclose()


@pytest.mark.parametrize("how", ["cancelled", "failed"])
@pytest.mark.parametrize("where", ["write_caps", "publish"])
async def test_a_start_given_up_after_its_startup_hooks_runs_the_shutdown_hooks(
    redis_url: str,
    namespace: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    where: str,
) -> None:
    """Every startup hook returned, then the start was cancelled (Redis not answering its next
    call, a signal) or failed: the shutdown hooks did not run, and what the startup hooks
    opened stayed open."""
    pool, events = _pool(redis_url, namespace)
    reached = asyncio.Event()

    async def stuck(*args: Any) -> None:
        reached.set()
        if how == "failed":
            raise ConnectionError("Redis went away")
        await asyncio.Event().wait()

    if where == "write_caps":
        monkeypatch.setattr("errands.worker.starting.write_caps", stuck)
    else:
        monkeypatch.setattr("errands.store.served.ServedNames.publish", stuck)
    starting = asyncio.create_task(pool.start())
    await asyncio.wait_for(reached.wait(), 5)
    if how == "cancelled":
        starting.cancel()
    with pytest.raises(asyncio.CancelledError if how == "cancelled" else ConnectionError):
        await starting
    assert events == ["opened", "warmed", "closed"]
    assert not pool.started and await live_pools(redis, namespace) == []
    assert pool._redis is None


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_a_startup_hook_given_up_runs_no_shutdown_hook(
    redis_url: str, namespace: str, how: str
) -> None:
    """(as documented: an exception in a startup hook aborts the start; a hook cancelled
    likewise) The shutdown hooks pair with a start whose every startup hook returned."""
    pool, events = _pool(redis_url, namespace)
    await _given_up(pool, how)
    assert events == ["opened"]


async def test_a_shutdown_hook_failing_in_a_start_given_up_is_logged_and_the_start_error_kept(
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool, events = _pool(redis_url, namespace)

    @pool.on_shutdown
    def broken(context: dict[str, Any]) -> None:
        raise RuntimeError("the ledger would not close")

    async def refused(*args: Any) -> None:
        raise RedisUnavailableError("Redis went away")

    monkeypatch.setattr("errands.worker.starting.write_caps", refused)
    with pytest.raises(RedisUnavailableError, match="Redis went away"):
        await pool.start()
    assert events == ["opened", "warmed", "closed"]
    assert "the ledger would not close" in caplog.text


async def test_a_start_that_cannot_reach_redis_closes_the_client_the_pool_made(
    namespace: str,
) -> None:
    with socket.socket() as sock:  # (a port nobody listens on once closed)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool, events = _pool(f"redis://127.0.0.1:{port}/0", namespace)
    made = pool.redis
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"):
        await pool.start()
    assert pool._redis is None and pool.redis is not made
    assert events == []
    await pool.redis.aclose()
