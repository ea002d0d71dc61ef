"""One Enqueuer used on another event loop, or in a child forked after it connected: its calls
never use a pooled connection opened on the other loop or by the parent (store/foreign.py).
``enqueue_many``'s connection (store/pinned.py: BulkEnqueue) was taken from the pool as it was:
its command written on a socket whose reader belongs to the other loop (in a forked child, the
parent's socket), then ``RuntimeError: ... attached to a different loop`` raised to the caller,
the job stored all the same (found by review)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from redis import Redis as SyncRedis

from errands import Enqueuer
from errands.store.keys import Keys
from tests.support.forks import fork, in_child, on_thread, till, until


def _stored(url: str, namespace: str) -> set[str]:
    with SyncRedis.from_url(url) as r:
        return {k.decode() for k in r.hkeys(Keys(namespace).jobs)}


def test_enqueue_many_on_a_second_loop_while_the_first_is_open(
    redis_url: str, namespace: str
) -> None:
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(enqueuer.enqueue_many([("a", {}, {"job_id": "on-first"})]))
        for i in range(3):
            items = [("a", {"i": i}, {"job_id": f"on-second-{i}"})]
            jobs = second.run_until_complete(enqueuer.enqueue_many(items))
            assert [j.existed for j in jobs] == [False]
        jobs = first.run_until_complete(enqueuer.enqueue_many([("a", {}, {"job_id": "back"})]))
        assert [j.existed for j in jobs] == [False]
        first.run_until_complete(enqueuer.aclose())
        second.run_until_complete(asyncio.sleep(0))  # (closes the socket let go there)
    finally:
        first.close()
        second.close()
    assert _stored(redis_url, namespace) == {"on-first", "back"} | {
        f"on-second-{i}" for i in range(3)
    }


def test_enqueue_many_in_a_forked_child_uses_connections_of_its_own(
    redis_url: str, namespace: str
) -> None:
    """The parent's loop stays open (it goes on enqueueing after the fork), its pool holding
    idle connections; the child enqueues under asyncio.run (a real process)."""
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    loop = asyncio.new_event_loop()

    async def warm() -> None:
        await asyncio.gather(*(enqueuer.enqueue_many([("w", {"i": i})]) for i in range(4)))

    loop.run_until_complete(warm())

    def child() -> None:
        for i in range(3):
            items = [("c", {}, {"job_id": f"child-{i}"})]
            jobs = asyncio.run(enqueuer.enqueue_many(items))
            assert [j.existed for j in jobs] == [False]

    try:
        with fork(child) as forked:
            for i in range(3):
                items = [("p", {}, {"job_id": f"parent-{i}"})]
                jobs = loop.run_until_complete(enqueuer.enqueue_many(items))
                assert [j.existed for j in jobs] == [False]
            assert forked.answer() == b"ok"
        loop.run_until_complete(enqueuer.aclose())
    finally:
        loop.close()
    ids = _stored(redis_url, namespace)
    assert {f"child-{i}" for i in range(3)} | {f"parent-{i}" for i in range(3)} <= ids


def test_an_enqueue_on_another_thread_s_loop_while_one_is_in_flight_is_refused(
    redis_url: str, namespace: str
) -> None:
    """Thread A's loop has a call in flight and two jobs gathered behind it when the main
    thread enqueues under asyncio.run (as asgiref's async_to_sync does per call): the main
    thread's enqueue took the coalescer over (its state is one loop's), and A's two gathered
    callers were never told: they waited for ever. Now it is refused, naming the rule."""
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    coalescer = enqueuer._coalescer
    real = coalescer._fast
    assert real is not None
    release = threading.Event()

    async def held(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
        if rows[0][2] == "a-0":  # A's first call stays in flight until released
            while not release.is_set():
                await asyncio.sleep(0.005)
        return await real(names, rows)

    coalescer._fast = held
    outcome: dict[str, Any] = {}

    def thread_a() -> None:
        async def run() -> list[Any]:
            calls = [enqueuer.enqueue("a", {}, job_id=f"a-{i}") for i in range(3)]
            try:
                return await asyncio.wait_for(asyncio.gather(*calls), 5)
            finally:
                await enqueuer.aclose()

        try:
            outcome["a"] = [j.id for j in asyncio.run(run())]
        except BaseException as exc:
            outcome["a"] = exc

    a = threading.Thread(target=thread_a)
    a.start()
    try:
        until(lambda: len(coalescer._pending) == 2)
        with pytest.raises(RuntimeError, match="one event loop at a time"):
            asyncio.run(enqueuer.enqueue("b", {}, job_id="b"))
    finally:
        release.set()
        a.join(10)
    assert outcome["a"] == ["a-0", "a-1", "a-2"]
    assert _stored(redis_url, namespace) == {"a-0", "a-1", "a-2"}


def test_a_child_forked_while_a_thread_s_loop_has_a_call_in_flight_enqueues(
    redis_url: str, namespace: str
) -> None:
    """The parent's loop runs in a thread, a call in flight, when the main thread forks: in the
    child that loop is the parent's (its thread is not there), so the child's own loop takes
    the Enqueuer over, not refused as a second loop running at once."""
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    coalescer = enqueuer._coalescer
    real = coalescer._fast
    assert real is not None
    release = threading.Event()

    async def held(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
        if rows[0][2] == "held":
            while not release.is_set():
                await asyncio.sleep(0.005)
        return await real(names, rows)

    coalescer._fast = held

    async def parent_call() -> None:
        try:
            await enqueuer.enqueue("p", {}, job_id="held")
        finally:
            await enqueuer.aclose()

    thread = threading.Thread(target=asyncio.run, args=(parent_call(),))
    thread.start()
    try:
        until(lambda: coalescer._busy)

        def child() -> None:
            coalescer._fast = real
            assert asyncio.run(enqueuer.enqueue("c", {}, job_id="child")) is not None

        answer = in_child(child)
    finally:
        release.set()
        thread.join(10)
    assert answer == b"ok"
    assert _stored(redis_url, namespace) == {"held", "child"}


def test_a_forked_child_never_writes_on_the_parent_s_connections(
    redis_url: str, namespace: str
) -> None:
    """redis-py's own calls (the general path: the typo check's lookup, enqueue_unique, a
    fallback) took the parent's idle connections in a forked child and wrote on them: the
    reply went to the parent's socket (CLIENT LIST showed the child's command as the last one
    of a parent's connection)."""
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)
    loop = asyncio.new_event_loop()

    async def warm() -> None:
        await asyncio.gather(*(enqueuer.redis.ping() for _ in range(3)))

    loop.run_until_complete(warm())
    pool: Any = enqueuer.redis.connection_pool
    ports = {c._writer.get_extra_info("sockname")[1] for c in pool._available_connections}
    assert ports

    async def child() -> None:
        await enqueuer.redis.get(f"{namespace}-child")
        assert await enqueuer.enqueue_unique("u", {}, job_id="child") is not None
        await enqueuer.aclose()

    try:
        assert in_child(lambda: asyncio.run(child())) == b"ok"
        with SyncRedis.from_url(redis_url) as r:
            last = {int(c["addr"].rsplit(":", 1)[1]): c["cmd"] for c in r.client_list()}
        assert {last[p] for p in ports if p in last} == {"ping"}
        loop.run_until_complete(enqueuer.aclose())
    finally:
        loop.close()
    assert "child" in _stored(redis_url, namespace)


def test_calls_waiting_for_a_connection_on_a_later_loop(redis_url: str, namespace: str) -> None:
    """More calls at once than the pool has connections, under one asyncio.run, then another:
    redis-py's pool's condition was bound to the first loop that waited on it, so every call
    that waited on the second loop raised RuntimeError ('... is bound to a different event
    loop'), as in a forked child."""
    url = f"{redis_url}?max_connections=4"  # (a pool of 4: the burst waits for connections)
    enqueuer = Enqueuer.from_url(url, namespace=namespace, strict=None)

    async def burst(run: int) -> list[bool]:
        calls = [enqueuer.enqueue_many([("m", {"run": run, "i": i})]) for i in range(40)]
        jobs = await asyncio.gather(*calls)
        return [j.existed for batch in jobs for j in batch]

    async def last(run: int) -> list[bool]:
        try:
            return await burst(run)
        finally:
            await enqueuer.aclose()

    assert asyncio.run(burst(1)) == [False] * 40
    assert asyncio.run(last(2)) == [False] * 40
    assert len(_stored(redis_url, namespace)) == 80


def test_aclose_on_a_later_loop_after_the_first_closed(redis_url: str, namespace: str) -> None:
    """Used under one asyncio.run, closed under another (a script's last asyncio.run, a test
    fixture's teardown): aclose() ran redis-py's disconnect of the connections on their closed
    loop and raised 'Event loop is closed'."""
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace, strict=None)

    async def use() -> None:
        await asyncio.gather(*(enqueuer.enqueue_many([("m", {"i": i})]) for i in range(5)))
        await enqueuer.enqueue("x", {})

    asyncio.run(use())
    asyncio.run(enqueuer.aclose())
    assert len(_stored(redis_url, namespace)) == 6


def test_an_enqueue_refused_on_a_second_loop_gives_its_held_connection_back(
    redis_url: str, namespace: str
) -> None:
    """The Enqueuer holds a connection of an asyncio.run now over when thread A's loop is
    inside the pool (holding its condition, contended): an enqueue under a new asyncio.run gave
    the held connection back on its loop, which awaited A's condition and raised RuntimeError
    ('... bound to a different event loop'), the connection counted in use for ever (a slot of
    the pool lost). Now it is given back, then the enqueue refused naming the rule."""
    enqueuer = Enqueuer.from_url(f"{redis_url}?max_connections=2", namespace=namespace, strict=None)
    pool: Any = enqueuer.redis.connection_pool
    assert asyncio.run(enqueuer.enqueue("a", {}, job_id="first")) is not None
    assert len(pool._in_use_connections) == 1  # (the held one)

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
            asyncio.run(enqueuer.enqueue("a", {}, job_id="second"))
    finally:
        done.set()
        thread.join(10)
    assert not pool._in_use_connections
    asyncio.run(enqueuer.aclose())
    assert _stored(redis_url, namespace) == {"first"}
