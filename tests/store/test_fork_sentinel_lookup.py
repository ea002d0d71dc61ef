"""A redis+sentinel:// client's master lookups (SerialSentinel's lock, store/topology.py) in a
child forked while another thread of the parent was mid-lookup (found by review, FAILS on main):
the lock is copied held, with no task to release it, and every lookup of the child (its first
call connects anew: the at-fork hook let the parent's connections go) waits for ever. The
pools' locks are made anew at the fork (foreign.forked); this one is not. No server needed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from errands.store.topology import connect_url
from tests.support.forks import in_child, on_thread, till, until


def test_a_lookup_held_by_another_thread_at_the_fork() -> None:
    client = connect_url("redis+sentinel://127.0.0.1:1/mymaster", {})
    pool: Any = client.connection_pool
    manager: Any = pool.sentinel_manager
    ready = threading.Event()

    async def mid_lookup(done: threading.Event) -> None:
        async with manager._lookup:
            ready.set()
            await till(done)

    def child() -> None:
        async def lookup() -> None:
            try:  # (no sentinel answers: an error, not a wait for ever)
                await asyncio.wait_for(manager.discover_master("mymaster"), 3)
            except TimeoutError:
                raise
            except Exception:
                pass

        asyncio.run(lookup())

    thread, done = on_thread(mid_lookup)
    try:
        until(ready.is_set)
        answer = in_child(child)
    finally:
        done.set()
        thread.join(10)
    assert answer == b"ok"
