"""Scaffolding of the tests that fork a real child (``os.fork``) or run another thread's event loop
beside the main thread's. A forked child runs ``body`` and tells its outcome through a pipe:
``b"ok"``, or the ``repr`` of what it raised (300 bytes at most); then it leaves with
``os._exit`` (no test machinery runs there, nothing of the parent is closed by the child)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

from redis import Redis as SyncRedis

__all__ = [
    "Child",
    "fork",
    "in_child",
    "in_process",
    "last_commands",
    "on_thread",
    "parent_untouched",
    "till",
    "until",
]


class Child:
    """A forked child running: ``answer()`` waits for it to end and returns what it told."""

    def __init__(self, pid: int, read: int) -> None:
        self.pid, self._read = pid, read
        self._answer: bytes | None = None

    def answer(self) -> bytes:
        if self._answer is None:
            try:
                os.waitpid(self.pid, 0)
                self._answer = os.read(self._read, 300)
            finally:
                os.close(self._read)
        return self._answer

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.answer()


def fork(body: Callable[[], object]) -> Child:
    """Fork; the child runs ``body`` and tells ``b"ok"`` or what it raised, then exits."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded" (pytest's)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        try:
            body()
            os.write(write, b"ok")
        except BaseException as exc:
            os.write(write, repr(exc).encode()[:300])
        finally:
            os._exit(0)
    os.close(write)
    return Child(pid, read)


def in_child(body: Callable[[], object]) -> bytes:
    """What a forked child running ``body`` told (the parent does nothing meanwhile)."""
    return fork(body).answer()


def in_process(body: Callable[[], object]) -> bytes:
    """``in_child``, by a ``multiprocessing`` process of the ``fork`` start method (as a
    process pool or gunicorn's workers)."""
    context = multiprocessing.get_context("fork")
    read, write = context.Pipe(duplex=False)

    def run() -> None:
        try:
            body()
            write.send_bytes(b"ok")
        except BaseException as exc:
            write.send_bytes(repr(exc).encode()[:300])

    with warnings.catch_warnings():  # 3.12+: "this process is multi-threaded" (pytest's)
        warnings.simplefilter("ignore", DeprecationWarning)
        process = context.Process(target=run)
        process.start()
    process.join(30)
    write.close()
    return read.recv_bytes() if read.poll(1) else f"exit code {process.exitcode}".encode()


def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling, in real time: another thread or process is awaited) for ``check``."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert check()


def on_thread(
    go: Callable[[threading.Event], Coroutine[Any, Any, None]],
) -> tuple[threading.Thread, threading.Event]:
    """``go(done)`` run by ``asyncio.run`` in a new thread; set ``done`` to let it end."""
    done = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(go(done),))
    thread.start()
    return thread, done


async def till(done: threading.Event) -> None:
    """Sleep on the running loop (which goes on serving its tasks) until ``done`` is set."""
    while not done.is_set():
        await asyncio.sleep(0.005)


def last_commands(url: str) -> dict[int, str]:
    """The last command of each client of the server, by its local port."""
    with SyncRedis.from_url(url) as r:
        return {int(c["addr"].rsplit(":", 1)[1]): c["cmd"] for c in r.client_list()}


def _idle_ports(redis: Any) -> set[int]:
    pool = redis.connection_pool
    return {c._writer.get_extra_info("sockname")[1] for c in pool._available_connections}


def parent_untouched(
    url: str,
    redis: Any,
    use: Callable[[], Awaitable[object]],
    close: Callable[[], Awaitable[None]],
    child_by: Callable[[Callable[[], object]], bytes] = in_child,
) -> None:
    """Warm ``redis``'s pool on a loop left open (the parent's connections idle), fork (by
    ``child_by``); the child runs ``use()``: none of the parent's connections saw a command but
    the parent's PINGs."""
    loop = asyncio.new_event_loop()
    try:

        async def warm() -> None:
            await asyncio.gather(*(redis.ping() for _ in range(3)))

        loop.run_until_complete(warm())
        ports = _idle_ports(redis)
        assert ports

        async def child() -> None:
            await asyncio.wait_for(use(), 5)

        assert child_by(lambda: asyncio.run(child())) == b"ok"
        last = last_commands(url)
        seen = {last[p] for p in ports if p in last}
        assert seen == {"ping"}, f"last commands on the parent's connections: {seen}"
        loop.run_until_complete(close())
    finally:
        loop.close()
