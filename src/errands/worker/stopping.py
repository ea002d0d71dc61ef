"""The worker's part of a pool's stop, or of the loss of its lease: stop fetching (jobs fetched
ahead go back), wait for the running jobs, cancel them, or abandon them at once."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from .quieting import Quieting

if TYPE_CHECKING:
    from ..job import Job
    from ..store.scripts import Fetched
    from .acker import Acker
    from .settler import Settler

__all__ = ["Stopping"]

log = logging.getLogger("errands.worker")


class Stopping(Quieting):
    """Mixin of Worker (with its quiet: quieting.py)."""

    settler: Settler
    acker: Acker
    wake: asyncio.Event
    tasks: set[asyncio.Task[None]]
    running: dict[str, tuple[Job, asyncio.Task[Any]]]
    buffer: deque[tuple[str, Fetched, float]]
    _holding: dict[asyncio.Future[None], str]
    _slot_freed: asyncio.Event
    _batch_stop: asyncio.Event
    _stopping: bool
    _cancelling: bool
    abandoned: bool
    unwritten_on_stop = 0  # jobs whose outcome the stop gave up writing (cancel_running)

    if TYPE_CHECKING:  # provided by the Fetching and ThreadJobs mixins

        def _give_back(self, name: str, item: Fetched) -> None: ...

        def thread_tasks(self, tasks: set[asyncio.Task[None]]) -> list[asyncio.Task[None]]: ...

        def thread_job(self, task: asyncio.Task[None]) -> Job: ...

        def running_job(self, task: asyncio.Future[None]) -> Job | None: ...

    def stop_fetching(self) -> None:
        self._stopping = True
        self._slot_freed.set()
        self.wake.set()
        self._batch_stop.set()
        self._quiet_over(stopping=True)
        while self.buffer:  # fetched ahead, never started: back on their queues
            name, item, _at = self.buffer.popleft()
            self._give_back(name, item)

    def abandon(self, keep_acks: bool = False) -> tuple[int, int, int]:
        """The lease is lost: the jobs held here were given to other pools. Stop fetching,
        cancel every job task at once (without settling: the fences would refuse it anyway),
        forget the jobs fetched ahead and the acks not written (unless ``keep_acks``: the
        lease was given up before a reaper could take it, and an ack written before one does
        still counts). Returns (jobs cancelled, fetched ahead, acks dropped)."""
        self.abandoned = self._stopping = True
        self.settler.abandoned = True
        self._slot_freed.set()
        self._batch_stop.set()
        self._quiet_over(stopping=True)
        self.wake.set()
        buffered = len(self.buffer)
        self.buffer.clear()
        acks = 0 if keep_acks else self.acker.abandon()
        running = 0
        for task in list(self.tasks):
            running += self.running_job(task) is not None
            task.cancel()
        return running, buffered, acks

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no job runs; False on timeout."""
        if not self.tasks:
            return True
        _done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return not pending

    async def cancel_running(self, timeout: float) -> list[Job]:
        """Cancel running jobs (the grace ran out): async ones go back on their queues (waited
        for up to ``timeout``). Returns the jobs whose plain-def handler still runs in a thread:
        a thread cannot be interrupted, so those keep their job until it returns."""
        self._cancelling = True
        tasks = set(self.tasks)
        # only the tasks whose handler runs: one whose handler ended writes its job's outcome
        # (a failure, a cancel request, a give-back), and cancelled it would leave the job in
        # progress, run again by a reaper as if this process had died; it gets as long (a
        # batch's task holds no job here: cancelled at once, its handler may run)
        settling = {t for t in tasks if t in self._holding and self.running_job(t) is None}
        for task in tasks.difference(settling):
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {t for t in tasks if not t.done()}
        while pending and len(self.thread_tasks(pending)) < len(pending):
            left = deadline - loop.time()
            if left <= 0:
                break
            _done, pending = await asyncio.wait(pending, timeout=min(left, 0.05))
        threads = self.thread_tasks(pending)
        # those whose handler ended, and whose outcome (a requeue too) Redis did not take in
        # time: given up now, not left retrying after the stop
        settling = {t for t in pending if t in self._holding and self.running_job(t) is None}
        self.unwritten_on_stop = len(settling)
        for task in settling:
            log.warning(
                "job %s: its outcome not written within %.1fs; left in progress (a reaper "
                "gives it back once this pool is gone)",
                self._holding.get(task, "?"),
                timeout,
            )
            task.cancel()
        for task in pending.difference(threads, settling):
            log.error("job task %s ignores cancellation; leaving it running", task.get_name())
        return [self.thread_job(t) for t in threads]
