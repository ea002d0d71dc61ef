"""Task and thread plumbing the pool relies on when it stops.

- ``cancel_and_wait``: on Python 3.11, ``asyncio.wait_for`` (which redis-py awaits around every
  write) swallows a cancellation that lands just as the write completes, so a background loop
  cancelled once may simply carry on (``pool.stop()`` then waited forever). Cancel again until
  the task is really done.
- ``wait_event``: sleep up to a time, waking early when an event is set.
- ``DaemonThreadPool``: runs plain-def handlers. Its threads are daemons: a handler still
  running after ``stop()`` gave up on it (its job is back on its queue) must not keep the
  process alive until it returns, which ``ThreadPoolExecutor``'s joined-at-exit threads do.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["DaemonThreadPool", "cancel_and_wait", "wait_event"]

P = ParamSpec("P")
T = TypeVar("T")


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when ``event`` is set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], timeout: float = 10.0
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them, cancelling again every 0.1 s any that is still
    running. Returns the ones still running after ``timeout``; exceptions are retrieved."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            break
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=min(0.1, left))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()
    return pending


class DaemonThreadPool(Executor):
    """A minimal executor of up to ``max_workers`` reused daemon threads."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "errands-job") -> None:
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._shutdown = False
        self._calls = 0  # calls running now
        self._no_calls = threading.Condition(self._lock)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.put((future, lambda: fn(*args, **kwargs)))
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max:
                name = f"{self._prefix}-{len(self._threads) + 1}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._calls += 1
                try:
                    result = call()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    with self._lock:
                        self._calls -= 1
                        if not self._calls:
                            self._no_calls.notify_all()
            del item, future, call
            with self._lock:
                self._idle += 1

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no call runs (False after ``timeout`` seconds)."""
        with self._no_calls:
            return self._no_calls.wait_for(lambda: not self._calls, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once their current call returns; with ``wait``, wait for that."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
