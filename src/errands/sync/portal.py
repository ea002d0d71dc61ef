"""An asyncio event loop in a daemon thread, owning one async object (an Enqueuer, a Client),
for blocking callers in any thread.

- Thread-safe: any thread submits a coroutine and blocks on its result; the coroutines run
  concurrently on the one loop and share its connection pool.
- Works from a thread that runs an event loop of its own (the caller blocks, the portal's loop
  works: no deadlock); only a call from the portal's own thread (an enqueue middleware calling
  the sync API, or its ``close()``) is refused, at once.
- The caller's context variables (a request id, an OpenTelemetry span) are copied into the task,
  so middleware sees them as it would in the caller's thread.
- After ``os.fork()`` (gunicorn ``--preload``, multiprocessing) the child starts a loop of its own
  on first use; the parent's connections are never touched. A child forked without Python's
  fork hooks (uWSGI's workers, unless ``py-call-osafterfork``) notices by its pid at its first
  call, and runs errands' fork hooks then (``_check_fork``): the same (it waited for ever, on
  the loop of a thread the child does not have).
- A portal dropped without ``close()`` (its owner made per request) closes its object and stops
  its loop thread, not waited for (they stayed, open, for the life of the process).
- ``close()`` cancels the calls in flight (each caller gets ``concurrent.futures.
  CancelledError``, an Exception, an awaiting one too: its task was not cancelled) before it
  closes the object and stops the loop; a call that reaches the stopping loop raises at once.
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

from ..building import forget_drawn_ids

__all__ = ["Portal"]

T = TypeVar("T")


class Closable(Protocol):
    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Closable)
_PORTALS: weakref.WeakSet[Portal[Any]] = weakref.WeakSet()
# in a forked child: the parent's loops, threads, calls and objects, kept and never touched
# (collected, their sockets and self-pipes would be closed on the parent's loop objects, whose
# epoll instance the child shares: unregistered there, the parent's loop would no longer wake)
_PARENTS: list[tuple[Any, ...]] = []
_FORK_LOCK = threading.Lock()  # (taken only in a child that notices the fork by its pid)
_PID = os.getpid()  # the process errands' fork hooks last ran for (see _check_fork)


class Portal(Generic[R]):
    """Runs ``fn(resource)`` coroutines on a private loop; ``resource`` is made by ``make`` on
    that loop's thread at first use (again after ``close()`` or a fork)."""

    def __init__(self, make: Callable[[], R], name: str) -> None:
        self._make = make
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gate: _Gate | None = None
        self._calls: set[asyncio.Task[Any]] = set()  # (on the loop's thread) calls in flight
        self._resource: R | None = None
        self._exited = False
        _PORTALS.add(self)

    # -- the loop thread ---------------------------------------------------------------------
    def _running_loop(self) -> tuple[asyncio.AbstractEventLoop, _Gate]:
        with self._lock:
            if (self._loop is None or self._thread is None or self._gate is None
                    or not self._thread.is_alive()):  # fmt: skip
                self._loop, self._thread, self._gate = _start_loop(self._name)
            return self._loop, self._gate

    def _on_loop(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    async def _with_resource(self, fn: Callable[[R], Awaitable[T]]) -> T:
        if self._loop is not asyncio.get_running_loop():  # a loop close() took: cancelled, as
            raise asyncio.CancelledError  # the calls in flight there (not its resource's user)
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
        _check_fork()
        if self._on_loop():
            raise RuntimeError(
                f"{self._name}: called from its own event loop thread (from an enqueue "
                "middleware?); use the async Enqueuer or Client there"
            )
        return self._submit(self._with_resource(fn))

    async def run_async(self, fn: Callable[[R], Awaitable[T]]) -> T:
        """``run`` for a caller in an event loop: awaits the call without blocking its loop or
        a thread of its own; cancelling the caller cancels the call on the portal's loop (it ran
        on, in a thread that blocked until its end: ``asyncio.to_thread(run)``)."""
        _check_fork()
        if self._on_loop():  # (awaited on the portal's loop itself: a middleware's, run there)
            return await self._with_resource(fn)
        done, stop = self._start(self._with_resource(fn))
        try:
            return await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            # the caller was cancelled: the work stops too (wrap_future cancelled ``done``,
            # not the task; cancelling a task that ended does nothing)
            stop()
            task = asyncio.current_task()
            if task is not None and not task.cancelling():  # (close() ended the call, not a
                # cancel of the caller: the error a blocking caller gets, as through a thread)
                raise concurrent.futures.CancelledError(f"{self._name} was closed") from None
            raise

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        done, stop = self._start(coro)
        try:
            return done.result()
        except BaseException:
            if not done.done():  # KeyboardInterrupt in the caller: stop the work too
                stop()
            raise

    def _start(
        self, coro: Coroutine[Any, Any, T]
    ) -> tuple[concurrent.futures.Future[T], Callable[[], None]]:
        """Starts ``coro`` as a task on the portal's loop: the future of its outcome, and a
        function (for any thread) that cancels it."""
        loop, gate = self._running_loop()
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = loop.create_task(coro, context=context)
            tasks.append(task)
            calls = self._calls  # (this loop's, unless close() took it: its end cancels the task)
            calls.add(task)
            task.add_done_callback(calls.discard)
            task.add_done_callback(lambda t: _copy_outcome(t, done))

        if not gate.call(loop, start):
            coro.close()
            raise RuntimeError(f"{self._name} was closed while this call was being made")

        def stop() -> None:
            gate.call(loop, lambda: [t.cancel() for t in tasks])

        return done, stop

    def close(self) -> None:
        """Close the resource and stop the loop thread (a later call starts them again)."""
        _check_fork()
        if self._on_loop():  # (it would wait for its own loop: 10 s, then fail to join itself)
            raise RuntimeError(f"{self._name}: close() called from its own event loop thread")
        with self._lock:  # (the loop's calls and resource: a call made from now on starts anew)
            loop, thread = self._loop, self._thread
            calls, resource = self._calls, self._resource
            self._loop = self._thread = self._gate = self._resource = None
            self._calls = set()
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            shut = self._shut(calls, resource)
            asyncio.run_coroutine_threadsafe(shut, loop).result(timeout=10)
        finally:  # (the calls that reach the loop meanwhile: cancelled as it stops, _Gate)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    @staticmethod
    async def _shut(calls: set[asyncio.Task[Any]], resource: R | None) -> None:
        """The calls in flight cancelled (their callers waited forever once the loop stopped),
        then the resource closed: those of the loop being closed (calls made meanwhile run on a
        new loop, with a resource of their own)."""
        await _cancel(calls)
        if resource is not None:
            await resource.aclose()

    async def _release(self) -> None:
        resource, self._resource = self._resource, None
        if resource is not None:
            await resource.aclose()

    def _release_at_exit(self) -> None:
        _check_fork()
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
        to the parent (kept, never touched: _PARENTS)."""
        if self._loop is not None or self._resource is not None:
            _PARENTS.append((self._loop, self._thread, self._gate, self._calls, self._resource))
        self._lock = threading.Lock()
        self._loop = self._thread = self._gate = None
        self._calls = set()
        self._resource = None

    def __del__(self) -> None:
        """Dropped without close(): the loop closes the resource, then stops (its thread ends);
        not waited for. In a child that has not noticed its fork, the parent's loop and
        resource are kept (as ``_forget`` does): collected, the resource's connections closed
        themselves on the parent's loop object (when the child ran a loop of its own), taking
        their sockets out of the epoll instance the parent shares, whose calls then waited a
        socket timeout each."""
        try:
            loop, thread, resource = self._loop, self._thread, self._resource
            if os.getpid() != _PID:
                _PARENTS.append((loop, thread, self._gate, self._calls, resource))
                return
            if loop is None or thread is None:
                return
            if not thread.is_alive() or loop.is_closed():
                return
            coro = _close_then_stop(resource)
            try:
                asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # (closed meanwhile)
                coro.close()
        except Exception:  # (at interpreter exit, the modules half gone)
            return


async def _close_then_stop(resource: Closable | None) -> None:
    try:
        if resource is not None:
            await resource.aclose()
    finally:
        asyncio.get_running_loop().stop()


def _copy_outcome(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if done.done():
        return
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


class _Gate:
    """Callbacks reach a portal's loop only until it stops: one that would wait in a closed
    loop's queue forever is refused instead (``call`` returns False)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> bool:
        with self._lock:
            if self._open:
                loop.call_soon_threadsafe(fn)
            return self._open

    def shut(self) -> None:
        with self._lock:
            self._open = False


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` (and those their ends start, a few rounds) and wait for them (bounded:
    3 x 2.5 s, within the 10 s close() waits, which then closes the resource)."""
    for _ in range(3):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=2.5)


def _start_loop(name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread, _Gate]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    gate = _Gate()

    async def finish() -> None:  # (after the callbacks queued before the gate shut: FIFO)
        await _cancel(asyncio.all_tasks() - {asyncio.current_task()})
        await loop.shutdown_asyncgens()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            gate.shut()  # each task left (a call sent as close() ran) ends, its caller told
            try:
                loop.run_until_complete(finish())
            finally:
                loop.close()

    thread = threading.Thread(target=main, name=f"errands-{name}", daemon=True)
    thread.start()
    ready.wait()
    return loop, thread, gate


def _at_exit() -> None:
    for portal in list(_PORTALS):
        portal._release_at_exit()


def _after_fork() -> None:
    global _PID
    for portal in list(_PORTALS):
        portal._forget()
    _PID = os.getpid()


def _check_fork() -> None:
    """A child forked without Python's fork hooks (a C server's fork: uWSGI's workers) does at
    its first sync call what those hooks do for the sync API: the random job ids its parent
    drew ahead forgotten (each was acknowledged to one process and stored for the other), the
    portals' loops forgotten (the child's calls waited for ever). Their Enqueuers and Clients
    are made anew here, with pools of their own. Not covered: an asyncio ``Enqueuer`` in such a
    child before its first sync call (the ids), or one the parent had used (its connections).
    One ``os.getpid()`` per call (next to its thread hop); redis-py's sync pools check so too."""
    if os.getpid() != _PID:
        with _FORK_LOCK:
            if os.getpid() != _PID:
                forget_drawn_ids()
                _after_fork()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork)
