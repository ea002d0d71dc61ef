"""Scaffolding of the tests that fork a real child (``os.fork``) or run another thread's event loop
beside the main thread's. A forked child runs ``body`` and tells its outcome through a pipe:
``b"ok"``, or the ``repr`` of what it raised (300 bytes at most); then it leaves with
``os._exit`` (no test machinery runs there, nothing of the parent is closed by the child)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

__all__ = ["Child", "fork", "in_child", "on_thread", "till", "until"]


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
