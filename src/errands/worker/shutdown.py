"""The running jobs' part of a pool's stop: the grace, cancelling, and plain-def handlers.

One rule for jobs whose handler is a plain ``def`` (it runs in a thread, and a thread cannot be
interrupted): **its job is released only once its thread has ended**, so it never runs twice at
once. Either the thread returns (its outcome is recorded as usual: done, failed...), or the
process exits and the thread dies with it (the job stays in the pool's in-progress set, and
other pools run it again after ``dead_timeout``, counted as a recovery). Hence:

- ``await pool.stop()`` in a process that lives on (the pool embedded in an app) waits for such
  threads after the grace, heartbeating meanwhile, and records their outcome;
- ``pool.run()`` and ``errands worker`` exit the process after the grace (``stop(exiting=True)``)
  without waiting for them;
- a ``stop()`` cancelled while it waits leaves a thread heartbeating for the pool until those
  handlers return.

The grace applies once: after it, async jobs are cancelled and requeued (their cancellation gets
``CANCEL_WAIT`` seconds to reach Redis), threads are not waited for a second time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from ..aio import DaemonThreadPool
from ..job import Job
from .heartbeat import Heartbeater
from .loop import Worker

__all__ = [
    "CANCEL_WAIT",
    "StopReport",
    "abandon",
    "finish_running",
    "keep_beating",
    "leave_in_progress",
    "wait_for_threads",
]

log = logging.getLogger("errands.pool")
CANCEL_WAIT = 5.0  # seconds for cancelled async jobs to be requeued


@dataclass
class StopReport:
    """What became of the jobs that were running when the pool stopped."""

    requeued: int = 0  # async jobs cancelled after the grace and put back on their queues
    finished: int = 0  # ended (done, failed...) after the grace ran out, before being cancelled
    in_threads: list[Job] = field(default_factory=list)  # plain-def handlers still running


def _names(jobs: list[Job]) -> str:
    return ", ".join(f"{job.name} {job.id}" for job in jobs)


async def finish_running(
    worker: Worker, pool_id: str, grace: float, grace_over: asyncio.Event
) -> StopReport:
    """Wait up to ``grace`` seconds (less if ``grace_over`` is set) for running jobs, then cancel
    the async ones (requeued) and report the plain-def ones still in their threads."""
    if await _wait_idle(worker, grace, grace_over):
        return StopReport()
    before = worker.requeued_on_stop
    running = worker.busy
    threads = await worker.cancel_running(timeout=CANCEL_WAIT)
    report = StopReport(requeued=worker.requeued_on_stop - before, in_threads=threads)
    unwritten = worker.unwritten_on_stop
    report.finished = max(0, running - report.requeued - len(threads) - unwritten)
    parts = [f"{report.requeued} requeued"]
    if unwritten:
        parts.append(f"{unwritten} left in progress (Redis did not take their outcome)")
    if report.finished:
        parts.append(f"{report.finished} finished meanwhile")
    if threads:
        parts.append(f"{len(threads)} still running in threads")
    noun = "job was" if running == 1 else "jobs were"
    log.warning(
        "pool %s: %d %s still running after the %.1fs grace: %s",
        pool_id,
        running,
        noun,
        grace,
        ", ".join(parts),
    )
    return report


async def _wait_idle(worker: Worker, grace: float, grace_over: asyncio.Event) -> bool:
    if grace_over.is_set():
        return not worker.busy
    over = asyncio.ensure_future(grace_over.wait())
    idle = asyncio.ensure_future(worker.wait_idle(grace))
    try:
        await asyncio.wait({over, idle}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        over.cancel()
        idle.cancel()
    return idle.done() and not idle.cancelled() and idle.result()


async def wait_for_threads(worker: Worker, pool_id: str, jobs: list[Job]) -> None:
    """Wait (heartbeating: the caller keeps the heartbeat running) until the plain-def handlers
    of ``jobs`` return; their outcomes are then recorded as usual."""
    log.warning(
        "pool %s: waiting for %d plain def handler(s) to return (a thread cannot be "
        "interrupted; the pool keeps heartbeating, so no other pool runs their jobs): %s",
        pool_id,
        len(jobs),
        _names(jobs),
    )
    await worker.wait_threads()
    log.info("pool %s: the plain def handlers it waited for have returned", pool_id)


def leave_in_progress(worker: Worker, pool_id: str, jobs: list[Job], dead_timeout: float) -> None:
    """The process exits with ``jobs`` still in their threads: leave them in progress."""
    worker.give_up(jobs)
    log.warning(
        "pool %s: exiting without waiting for %d plain def handler(s) (a thread cannot be "
        "interrupted): their jobs stay in progress and other pools run them again %.1fs after "
        "this process has exited (dead_timeout), counted as a recovery: %s",
        pool_id,
        len(jobs),
        dead_timeout,
        _names(jobs),
    )


def abandon(pool_id: str, worker: Worker, jobs: list[Job], tasks: list[asyncio.Task[None]]) -> None:
    """``stop()`` was cancelled while waiting for plain-def handlers: stop what runs on the loop
    and record nothing more for those jobs (they run again elsewhere once their threads end)."""
    log.warning(
        "pool %s: stop() cancelled; heartbeating until its threads return, then other pools "
        "run their jobs again",
        pool_id,
    )
    worker.give_up(jobs)
    for task in tasks:
        task.cancel()


def keep_beating(
    pool_id: str, heartbeater: Heartbeater | None, executor: DaemonThreadPool | None
) -> None:
    """Plain-def handlers still run but the pool's loop is done with them: keep heartbeating
    (from a daemon thread) until they return, then stop; other pools then run their jobs
    again, never while a thread still runs one."""
    if heartbeater is None or executor is None:
        return

    def run() -> None:
        executor.wait_idle()
        heartbeater.stop()

    threading.Thread(target=run, name=f"errands-linger-{pool_id}", daemon=True).start()
