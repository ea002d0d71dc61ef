"""The connection pool of ``connect()`` (store/topology.py: LoopPool) with two event loops at
once, in a child forked while another thread's loop is inside it, and a Client closed on a
later loop (found by review)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from redis import Redis as SyncRedis

from errands import Enqueuer
from errands.admin.client import Client
from errands.store.connection import connect
from errands.store.keys import Keys
from tests.support.forks import in_child, on_thread, till, until


def test_a_wait_on_a_second_running_loop_is_refused_and_the_first_loop_s_waiter_served(
    redis_url: str,
) -> None:
    """Thread A's loop holds the only connection, a task of its own waiting for it, when the
    main thread's loop asks for one: the second loop made the pool's condition anew, so A's
    waiter slept on a condition nobody notified, and both waited out the pool's timeout
    ('No connection available'). Now the second loop is refused at once, naming the rule,
    and A's waiter gets the connection when A gives it back."""
    redis = connect(redis_url, max_connections=1, timeout=3)
    pool: Any = redis.connection_pool
    out: dict[str, Any] = {}

    async def a(done: threading.Event) -> None:
        held = await pool.get_connection()
        waiter = asyncio.create_task(pool.get_connection())
        await till(done)
        await pool.release(held)
        try:
            out["waiter"] = await asyncio.wait_for(waiter, 2)
            await pool.release(out["waiter"])
        finally:
            await redis.aclose()

    thread, done = on_thread(a)
    try:
        until(lambda: bool(pool._condition._waiters))  # (A's waiter sleeps on the condition)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="one event loop at a time"):
            asyncio.run(pool.get_connection())
        assert time.monotonic() - started < 1
    finally:
        done.set()
        thread.join(10)
    assert "waiter" in out


def test_a_contended_inner_lock_of_a_running_loop_is_not_taken_over(redis_url: str) -> None:
    """The condition's inner lock binds to a loop on contention without anyone waiting for a
    connection: a loop running in another thread with it bound keeps it too."""
    redis = connect(redis_url)
    pool: Any = redis.connection_pool

    async def a(done: threading.Event) -> None:
        await pool._condition.acquire()
        other = asyncio.create_task(pool._condition.acquire())  # contended: binds the lock
        await till(done)
        pool._condition.release()
        await other
        pool._condition.release()

    thread, done = on_thread(a)
    try:
        until(lambda: bool(pool._condition._lock._waiters))
        with pytest.raises(RuntimeError, match="one event loop at a time"):
            asyncio.run(pool.get_connection())
    finally:
        done.set()
        thread.join(10)
    asyncio.run(redis.aclose())


@pytest.mark.parametrize("state", ["lock held", "every connection in use"])
def test_a_child_forked_while_a_thread_s_loop_is_inside_the_pool(
    redis_url: str, namespace: str, state: str
) -> None:
    """The main thread forks while another thread's loop is inside the pool. 'lock held': the
    thread is between acquire and release of the pool's condition (as in get_connection), which
    the child got held, with no owner: its first call hung for ever (outside redis-py's
    timeout). 'every connection in use': their tasks are not in the child, which counted them
    in use for its life: every call waited out the pool's timeout. Now the child makes the
    lock and condition anew and forgets those connections (one given back there is dropped)."""
    redis = connect(redis_url, max_connections=2, timeout=2)
    pool: Any = redis.connection_pool
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    held: list[Any] = []
    ready = threading.Event()

    async def a(done: threading.Event) -> None:
        held.extend(await asyncio.gather(*(pool.get_connection() for _ in range(2))))
        if state == "lock held":
            await pool.release(held.pop())
            await pool._condition.acquire()
        ready.set()
        await till(done)
        if state == "lock held":
            pool._condition.release()
        for conn in held:
            await pool.release(conn)
        await redis.aclose()

    thread, done = on_thread(a)
    try:
        until(ready.is_set)

        async def child() -> None:
            await asyncio.wait_for(redis.ping(), 5)
            await asyncio.wait_for(enqueuer.enqueue("c", {}, job_id="child"), 5)
            for conn in held:  # (as a task of the forking thread would)
                await pool.release(conn)
            assert not set(held) & {*pool._available_connections}
            await asyncio.wait_for(redis.ping(), 5)

        answer = in_child(lambda: asyncio.run(child()))
    finally:
        done.set()
        thread.join(10)
    assert answer == b"ok"
    with SyncRedis.from_url(redis_url) as r:
        assert r.hkeys(Keys(namespace).jobs) == [b"child"]


def test_client_aclose_on_a_later_loop_after_the_first_closed(redis_url: str) -> None:
    """Used under one asyncio.run, closed under another: Client.aclose() ran redis-py's
    disconnect of the connections on their closed loop ('Event loop is closed')."""
    client = Client.from_url(redis_url)

    async def use() -> None:
        await asyncio.gather(*(client.redis.ping() for _ in range(3)))

    asyncio.run(use())
    asyncio.run(client.aclose())


@pytest.mark.parametrize("held", [True, False])
def test_a_release_on_a_second_running_loop_gives_the_slot_back(redis_url: str, held: bool) -> None:
    """Thread A's loop is inside the pool (held: it holds the condition, another of its tasks
    waiting for it; else a task of its own waits for a connection) when thread B's loop gives
    back a connection (a held connection of an Enqueuer given back on a later loop). 'held':
    B's release awaited A's condition, raised RuntimeError ('... bound to a different event
    loop') and the connection stayed counted in use for ever, a slot of the pool lost. Now the
    slot comes back at once, and A's waiter gets it, told on its own loop (the other case
    passed before too: B notified A's waiter from B's thread, which asyncio does not support,
    and A's loop, polling here, saw it)."""
    redis = connect(redis_url, max_connections=1, timeout=3)
    pool: Any = redis.connection_pool

    async def take() -> Any:  # the pool's only connection, disconnected (as a held one given
        conn = await pool.get_connection()  # back on a later loop is)
        await conn.disconnect()
        return conn

    given = asyncio.run(take())
    out: dict[str, Any] = {}

    async def a(done: threading.Event) -> None:
        if held:
            await pool._condition.acquire()
            other = asyncio.create_task(pool._condition.acquire())  # contended: binds the lock
        else:
            waiter = asyncio.create_task(pool.get_connection())
        await till(done)
        if held:
            pool._condition.release()
            await other
            pool._condition.release()
            waiter = asyncio.create_task(pool.get_connection())
        try:
            out["waiter"] = await asyncio.wait_for(waiter, 2)
            await pool.release(out["waiter"])
        finally:
            await redis.aclose()

    async def b() -> None:
        try:
            await pool.release(given)
        except BaseException as exc:
            out["b"] = exc

    thread, done = on_thread(a)
    try:
        if held:
            until(lambda: bool(pool._condition._lock._waiters))
        else:
            until(lambda: bool(pool._condition._waiters))
        released = threading.Thread(target=asyncio.run, args=(b(),))
        released.start()
        released.join(5)
        assert not released.is_alive()
        assert "b" not in out
        if held:  # (else A's waiter may have it already)
            assert given not in pool._in_use_connections  # its slot back at once
    finally:
        done.set()
        thread.join(10)
    assert "waiter" in out
    assert not pool._in_use_connections


def test_a_double_release_on_a_second_running_loop_leaves_the_connection_idle_once(
    redis_url: str,
) -> None:
    """Thread A's loop holds the pool's condition when thread B's loop gives the same
    connection back twice (a caller's mistake). The second one put it in the idle list again:
    two later tasks would have shared its socket, each reading the other's replies. redis-py's
    own release refuses a connection not in use (KeyError); the release from another loop now
    ignores it."""
    redis = connect(redis_url, max_connections=2, timeout=3)
    pool: Any = redis.connection_pool

    async def take() -> Any:
        conn = await pool.get_connection()
        await conn.disconnect()
        return conn

    given = asyncio.run(take())
    out: dict[str, Any] = {}

    async def a(done: threading.Event) -> None:
        await pool._condition.acquire()
        other = asyncio.create_task(pool._condition.acquire())  # contended: binds the lock
        await till(done)
        pool._condition.release()
        await other
        pool._condition.release()
        await redis.aclose()

    async def b() -> None:
        try:
            await pool.release(given)
            await pool.release(given)
        except BaseException as exc:
            out["b"] = exc

    thread, done = on_thread(a)
    try:
        until(lambda: bool(pool._condition._lock._waiters))
        released = threading.Thread(target=asyncio.run, args=(b(),))
        released.start()
        released.join(5)
        assert not released.is_alive()
        assert "b" not in out
        assert [c for c in pool._available_connections if c is given] == [given]
        assert given not in pool._in_use_connections
    finally:
        done.set()
        thread.join(10)
