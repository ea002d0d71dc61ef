"""An asyncio event loop in a daemon thread, owning one async object (an Enqueuer, a Client),
for blocking callers in any thread.

- Thread-safe: any thread submits a coroutine and blocks on its result; the coroutines run
  concurrently on the one loop and share its connection pool.
- Works from a thread that runs an event loop of its own (the caller blocks, the portal's loop
  works: no deadlock); only a call from the portal's own thread (an enqueue middleware calling
  the sync API) is refused.
- The caller's context variables (a request id, an OpenTelemetry span) are copied into the task,
  so middleware sees them as it would in the caller's thread.
- After ``os.fork()`` (gunicorn ``--preload``, multiprocessing) the child starts a loop of its own
  on first use; the parent's connections are never touched.
- At interpreter exit the owned object is closed (``aclose``) but the thread stays: a call from a
  later ``atexit`` handler still works, reconnecting (Python 3.12+ forbids new threads there).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Portal"]

T = TypeVar("T")


class Closable(Protocol):
    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Closable)
_PORTALS: weakref.WeakSet[Portal[Any]] = weakref.WeakSet()


class Portal(Generic[R]):
    """Runs ``fn(resource)`` coroutines on a private loop; ``resource`` is made by ``make`` on
    that loop's thread at first use (again after ``close()`` or a fork)."""

    def __init__(self, make: Callable[[], R], name: str) -> None:
        self._make = make
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resource: R | None = None
        self._exited = False
        _PORTALS.add(self)

    # -- the loop thread ---------------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                self._loop, self._thread = _start_loop(self._name)
            return self._loop

    def _on_loop(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    async def _with_resource(self, fn: Callable[[R], Awaitable[T]]) -> T:
        if self._resource is None:
            self._resource = self._make()
        try:
            return await fn(self._resource)
        finally:
            if self._exited:  # a call from a late atexit handler: close again at once
                await self._release()

    def run(self, fn: Callable[[R], Awaitable[T]]) -> T:
        """Run ``fn(resource)`` on the portal's loop and return its result (or raise its
        exception) in the calling thread."""
        if self._on_loop():
            raise RuntimeError(
                f"{self._name}: called from its own event loop thread (from an enqueue "
                "middleware?); use the async Enqueuer or Client there"
            )
        return self._submit(self._with_resource(fn))

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._running_loop()
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(coro, context=context)
            tasks.append(task)
            task.add_done_callback(lambda t: _copy_outcome(t, done))

        loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except BaseException:
            if not done.done():  # KeyboardInterrupt in the caller: stop the work too
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
            raise

    def close(self) -> None:
        """Close the resource and stop the loop thread (a later call starts them again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive() or self._on_loop():
            self._resource = None
            return
        asyncio.run_coroutine_threadsafe(self._release(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    async def _release(self) -> None:
        resource, self._resource = self._resource, None
        if resource is not None:
            await resource.aclose()

    def _release_at_exit(self) -> None:
        self._exited = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or self._resource is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._release(), loop)
        try:
            future.result(timeout=5)
        except Exception:  # exiting anyway: the OS closes the sockets
            return

    def _forget(self) -> None:
        """In a forked child: the loop thread does not exist here, and the connections belong
        to the parent."""
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._resource = None


def _copy_outcome(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if done.done():
        return
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


def _start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name=f"errands-{name}", daemon=True)
    thread.start()
    ready.wait()
    return loop, thread


def _at_exit() -> None:
    for portal in list(_PORTALS):
        portal._release_at_exit()


def _after_fork() -> None:
    for portal in list(_PORTALS):
        portal._forget()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork)
