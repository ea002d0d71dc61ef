"""close() and a call made while it runs: the call gets a new loop with a resource of its own.
The loop's calls and resource were the portal's, whatever the loop: close() cancelled (from the
old loop's thread) a call made after it began on the new loop, then waited out its 5 s bound,
and closed the resource the new loop's calls were using (found by review)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from errands.sync.portal import Portal


class Resource:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_a_call_made_while_close_runs_has_a_loop_and_resource_of_its_own() -> None:
    portal: Portal[Resource] = Portal(Resource, "probe")
    cancelling, later_ran = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    async def slow_to_cancel(resource: Resource) -> None:
        seen["a"] = resource
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelling.set()
            for _ in range(500):  # its cleanup lasts until the later call ran (bounded)
                if later_ran.is_set():
                    break
                await asyncio.sleep(0.01)
            raise

    async def later(resource: Resource) -> str:
        seen["b"] = resource
        later_ran.set()
        return "done"

    def first() -> None:
        try:
            portal.run(slow_to_cancel)
        except BaseException as exc:
            seen["a error"] = exc

    def second() -> None:
        assert cancelling.wait(10)
        seen["b result"] = portal.run(later)

    portal.run(lambda resource: asyncio.sleep(0))
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    while "a" not in seen:
        time.sleep(0.001)
    threads[1].start()
    start = time.monotonic()
    portal.close()
    took = time.monotonic() - start
    for thread in threads:
        thread.join(10)
    assert seen["b result"] == "done"
    assert type(seen["a error"]).__name__ == "CancelledError"
    assert seen["a"] is not seen["b"] and seen["a"].closed and not seen["b"].closed
    assert took < 4, took  # (it waited 5 s for the new loop's call)
    portal.close()
    assert seen["b"].closed


def test_close_from_its_own_loop_thread_is_refused_at_once() -> None:
    """close() from a call on the portal's loop (an enqueue middleware closing the
    SyncEnqueuer): it waited 10 s for its own loop, then raised 'cannot join current thread',
    the loop stopped under the call (found by review)."""
    portal: Portal[Resource] = Portal(Resource, "probe")

    async def closer(resource: Resource) -> None:
        portal.close()

    start = time.monotonic()
    try:
        portal.run(closer)
    except RuntimeError as exc:
        assert "close() called from its own event loop thread" in str(exc)
    else:
        raise AssertionError("close() from the loop thread was not refused")
    assert time.monotonic() - start < 2
    assert portal.run(lambda resource: asyncio.sleep(0, "still works")) == "still works"
    portal.close()
