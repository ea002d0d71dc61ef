"""A pool embedded in a program (no CLI runner): ``python -m tests.support.apps.embedded_stop
URL NAMESPACE MODE``. It starts the ``threads`` app's pool, waits until a job has started, then
calls ``await pool.stop()`` (MODE ``wait``), or gives ``stop()`` 1 s and leaves the event loop
(MODE ``cancel``; the process then lives on for 15 s), and prints how long ``stop()`` took."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from .threads import pool


async def main(url: str, namespace: str, mode: str) -> None:
    pool.url, pool.namespace = url, namespace
    await pool.start()
    while not (pool.worker and pool.worker.busy):
        await asyncio.sleep(0.01)
    began = time.monotonic()
    if mode == "wait":
        await pool.stop()
        print(f"stop() returned after {time.monotonic() - began:.2f}s", flush=True)
        return
    try:
        async with asyncio.timeout(1.0):
            await pool.stop()
    except TimeoutError:
        print(f"stop() timed out after {time.monotonic() - began:.2f}s", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    asyncio.run(main(*sys.argv[1:4]))
    if sys.argv[3] == "cancel":
        print("event loop closed", flush=True)
        time.sleep(15)  # the process lives on, without the pool's event loop
