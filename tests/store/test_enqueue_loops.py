"""One Enqueuer used on another event loop, or in a child forked after it connected: its calls
never use a pooled connection opened on the other loop or by the parent (store/foreign.py).
``enqueue_many``'s connection (store/pinned.py: BulkEnqueue) was taken from the pool as it was:
its command written on a socket whose reader belongs to the other loop (in a forked child, the
parent's socket), then ``RuntimeError: ... attached to a different loop`` raised to the caller,
the job stored all the same (found by review)."""

from __future__ import annotations

import asyncio
import os
import warnings

from redis import Redis as SyncRedis

from errands import Enqueuer
from errands.store.keys import Keys


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
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded" (pytest's)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            for i in range(3):
                items = [("c", {}, {"job_id": f"child-{i}"})]
                jobs = asyncio.run(enqueuer.enqueue_many(items))
                assert [j.existed for j in jobs] == [False]
            os.write(write, b"ok")
        except BaseException as exc:
            os.write(write, repr(exc).encode()[:300])
        finally:
            os._exit(0)
    os.close(write)
    try:
        for i in range(3):
            items = [("p", {}, {"job_id": f"parent-{i}"})]
            jobs = loop.run_until_complete(enqueuer.enqueue_many(items))
            assert [j.existed for j in jobs] == [False]
        os.waitpid(pid, 0)
        assert os.read(read, 300) == b"ok"
        loop.run_until_complete(enqueuer.aclose())
    finally:
        os.close(read)
        loop.close()
    ids = _stored(redis_url, namespace)
    assert {f"child-{i}" for i in range(3)} | {f"parent-{i}" for i in range(3)} <= ids
