"""Running a pool as a process: signals, uvloop, burst mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import orjson

from ..logfmt import json_entry, logs_json
from .loop import Worker

__all__ = ["Servable", "run_pool"]

log = logging.getLogger("errands.runner")


class Servable(Protocol):
    """What running as a process needs of a pool (``WorkerPool`` is one)."""

    shutdown_grace: float
    worker: Worker | None
    left_in_progress: list[str]

    async def start(self) -> None: ...

    async def stop(self, grace: float | None = None, *, exiting: bool = False) -> None: ...

    def end_grace(self) -> None: ...

    async def quiet(self) -> None: ...

    async def drain(self) -> None: ...


async def serve(pool: Servable, *, burst: bool = False) -> None:
    """Run ``pool`` until SIGINT/SIGTERM (or, with ``burst``, until its queues are empty).
    A second signal ends the grace at once: running async jobs are requeued, and the process
    exits without waiting for plain-def handlers (their jobs run again elsewhere); a third
    exits at once, with status 128 + its number (what still runs is left as after a kill, for
    other pools' reapers). SIGTSTP quiets the pool (``pool.quiet()``: no new job, it keeps
    running until stopped); SIGCONT, which follows every SIGSTOP, does not resume it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    quieting: list[asyncio.Task[None]] = []
    started = asyncio.Event()  # (a SIGTSTP during the start quiets the pool once started)

    def on_quiet() -> None:
        log.debug("SIGTSTP received: quieting the pool")
        if not quieting or quieting[-1].done():  # (quiet twice is quiet once anyway)
            quieting.append(asyncio.create_task(_quiet(pool, started), name="errands-quiet"))

    def on_signal(sig: signal.Signals, count: int) -> None:
        if count == 1 and not started.is_set():
            log.info(
                "%s received while the pool starts: the start is given up (its startup hook "
                "cancelled, its registration removed); no job is run",
                sig.name,
            )
            stop.set()
        elif count == 1:
            log.info(
                "%s received: stopping; running jobs get %.1fs to finish (Ctrl-C again, or "
                "another SIGTERM, stops at once and requeues them)",
                sig.name,
                pool.shutdown_grace,
            )
            stop.set()
        else:
            log.warning(
                "%s received again: ending the grace now (a third signal exits at once: what "
                "still runs is left to other pools, as after a kill)",
                sig.name,
            )
            pool.end_grace()

    signals = _StopSignals(loop, on_signal)
    loop.add_signal_handler(signal.SIGTSTP, on_quiet)
    try:
        if not await _start(pool, stop):
            return
        started.set()
        if burst:
            drain = asyncio.create_task(pool.drain())
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({drain, waiter}, return_when=asyncio.FIRST_COMPLETED)
            for t in (drain, waiter):
                t.cancel()
        else:
            await stop.wait()
    finally:
        failure: BaseException | None = None
        try:
            await pool.stop(exiting=True)
        except BaseException as exc:  # (an on_shutdown hook raised: logged, naming it)
            failure = exc
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTSTP)
            signals.restore()
            for task in quieting:
                task.cancel()
            _exit_if_jobs_left(pool, failure)


async def _start(pool: Servable, stop: asyncio.Event) -> bool:
    """Start the pool, unless a stop signal comes first: the start is then cancelled (a hook
    awaiting something too), and ``pool.start()`` removes the registration. False then (True
    if the start ignored its cancellation, a hook swallowing it: the pool is stopped as usual)."""
    starting = asyncio.create_task(pool.start(), name="errands-start")
    stopped = asyncio.create_task(stop.wait(), name="errands-stop-wait")
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not starting.done():
            starting.cancel()
    try:
        await starting
    except asyncio.CancelledError:
        if starting.cancelled() and not _cancelling():
            return False
        raise
    return True


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _StopSignals:
    """SIGINT and SIGTERM, handled by the interpreter (in the main thread, between two
    bytecodes: also while a handler or a hook blocks the event loop, where a handler of the
    loop would never run). The first two are handed to the loop (``on_signal(sig, 1 or 2)``:
    stop, end the grace); the third exits the process at once."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_signal: Callable[[signal.Signals, int], None],
    ) -> None:
        self.loop, self.on_signal, self.count = loop, on_signal, 0
        self.previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count >= 3:
            _hard_exit(signum)
        with contextlib.suppress(RuntimeError):  # (the loop closed: the process exits)
            self.loop.call_soon_threadsafe(self.on_signal, signal.Signals(signum), self.count)

    def restore(self) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        self.previous.clear()


async def _quiet(pool: Servable, started: asyncio.Event) -> None:
    try:
        await started.wait()
        await pool.quiet()  # (it logs the INFO line)
    except Exception as exc:  # (not expected: quiet() logs what fails and goes on)
        log.error("errands internal error quieting the pool", exc_info=exc)


def _hard_exit(signum: int) -> None:
    """The third signal: exit now, whatever the stop is doing. The jobs still held (running,
    or whose outcome or requeue was not written yet) stay in the pool's in-progress set, and
    other pools' reapers give them back after ``dead_timeout``, as after a kill. Nothing may
    keep the exit from happening: the one line goes straight to stderr, as the log format (text,
    or JSON when the root logger writes JSON: ``--log-format json``) would write it, only when
    that cannot block (not through logging, whose stream may be the one the main thread is
    blocked writing to, or its lock held by a blocked thread), and the output still buffered
    (stdout, a full pipe maybe) is not flushed."""
    code = 128 + signum
    try:
        message = (
            f"{signal.Signals(signum).name} received a third time: exiting at once (status"
            f" {code}); the jobs this pool still holds run again elsewhere once its heartbeat"
            " lapses (dead_timeout), counted as recoveries"
        )
        if logs_json():
            entry = json_entry(time.time(), "WARNING", log.name, message)
            line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            line = f"{stamp} WARNING {log.name}: {message}\n".encode(errors="replace")
        if select.select([], [2], [], 0)[1]:  # (a pipe with room, a file, a terminal)
            os.write(2, line)
    finally:
        os._exit(code)


def _exit_if_jobs_left(pool: Servable, failure: BaseException | None) -> None:
    """A plain-def handler cannot be interrupted: the stop left its job in progress (it never
    runs twice at once), and asyncio.run would wait for its thread however long it takes. Exit
    now: the thread dies with the process, and other pools' reapers give the job back. The
    status is 1 when the stop raised (``failure``: an on_shutdown hook failed), as it is when
    the error propagates out of ``run()``."""
    if not pool.left_in_progress:
        return
    if failure is not None:
        log.error(
            "the stop failed (%s: %s): exiting with status 1", type(failure).__name__, failure
        )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if failure is None else 1)


def run_pool(pool: Servable, *, burst: bool = False) -> None:
    """Blocking entry point behind ``pool.run()`` and ``python -m errands worker``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop runs in this thread: run() starts its own
    else:
        raise RuntimeError(
            "pool.run() blocks and runs an event loop of its own, and one already runs here:"
            " in async code, use `async with pool:` (or `await pool.start()` and `await"
            " pool.stop()`)"
        )
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    try:
        import uvloop
    except ImportError:
        have_uvloop = False
    else:
        have_uvloop = True
    # outside the except clause: there the ImportError would be the context of every exception
    # a handler raises (and in its stored traceback)
    if have_uvloop:
        uvloop.run(serve(pool, burst=burst))
    else:
        asyncio.run(serve(pool, burst=burst))
