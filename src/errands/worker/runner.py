"""Running a pool as a process: signals, uvloop, burst mode."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Protocol

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

    async def drain(self) -> None: ...


async def serve(pool: Servable, *, burst: bool = False) -> None:
    """Run ``pool`` until SIGINT/SIGTERM (or, with ``burst``, until its queues are empty).
    A second signal ends the grace at once: running async jobs are requeued, and the process
    exits without waiting for plain-def handlers (their jobs run again elsewhere)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "%s received: stopping; running jobs get %.1fs to finish (Ctrl-C again, or "
                "another SIGTERM, stops at once and requeues them)",
                sig.name,
                pool.shutdown_grace,
            )
            stop.set()
        else:
            log.warning("%s received again: ending the grace now", sig.name)
            pool.end_grace()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await pool.start()
        if burst:
            drain = asyncio.create_task(pool.drain())
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({drain, waiter}, return_when=asyncio.FIRST_COMPLETED)
            for t in (drain, waiter):
                t.cancel()
        else:
            await stop.wait()
    finally:
        try:
            await pool.stop(exiting=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            _exit_if_jobs_left(pool)


def _exit_if_jobs_left(pool: Servable) -> None:
    """A plain-def handler cannot be interrupted: the stop left its job in progress (it never
    runs twice at once), and asyncio.run would wait for its thread however long it takes. Exit
    now: the thread dies with the process, and other pools' reapers give the job back."""
    if not pool.left_in_progress:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_pool(pool: Servable, *, burst: bool = False) -> None:
    """Blocking entry point behind ``pool.run()`` and ``python -m errands worker``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(pool, burst=burst))
        return
    uvloop.run(serve(pool, burst=burst))
