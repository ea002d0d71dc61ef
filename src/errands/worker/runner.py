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

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def drain(self) -> None: ...


async def serve(pool: Servable, *, burst: bool = False) -> None:
    """Run ``pool`` until SIGINT/SIGTERM (or, with ``burst``, until its queues are empty).
    A second signal cancels running jobs at once (they are put back on their queues)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    cancels: set[asyncio.Task[int]] = set()

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s received: stopping (grace %.1fs)", sig.name, pool.shutdown_grace)
            stop.set()
        else:
            log.warning("%s received again: cancelling running jobs now", sig.name)
            pool.shutdown_grace = 0.0
            if pool.worker is not None:
                cancels.add(loop.create_task(pool.worker.cancel_running(timeout=5.0)))

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
        await pool.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        _exit_if_jobs_stuck(pool)


def _exit_if_jobs_stuck(pool: Servable) -> None:
    """A plain-def handler cannot be interrupted: when its thread outlives the stop, its job task
    keeps waiting for it (the job keeps its slot, so it never runs twice at once), and
    asyncio.run would wait for that thread however long it takes. The job stays in this pool's
    in-progress set; other pools' reapers give it back once this process is gone, and its
    thread dies with the process. So leave now."""
    stuck = pool.worker.busy if pool.worker is not None else 0
    if not stuck:
        return
    log.warning("exiting with %d job(s) still running in threads; they will be recovered", stuck)
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
