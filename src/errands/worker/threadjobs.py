"""Plain-def handlers, the worker's side: they run in threads, which cannot be interrupted.

The worker knows which jobs are inside a thread right now, so that a stopping pool can tell
them apart from async jobs (docs/workers.md#graceful-shutdown), wait for them, or give them up
when the process exits (whatever such a handler does afterwards is not recorded)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from ..handlers import JobType, call_handler
from ..job import Job
from ..logfmt import job_extra

__all__ = ["LeftInProgress", "ThreadJobs"]

log = logging.getLogger("errands.worker")


class LeftInProgress(BaseException):
    """A plain-def handler returned after its exiting pool gave up on it: nothing is recorded."""


class ThreadJobs:
    """Mixin of Worker."""

    executor: Executor | None
    running: dict[str, tuple[Job, asyncio.Task[Any]]]
    _holding: dict[asyncio.Future[None], str]
    _in_thread: dict[str, Job]  # jobs whose plain-def handler runs in a thread now
    _given_up: set[str]  # thread jobs a stopping pool gave up on
    _cancel_requests: dict[str, bool]  # job id -> destroy (see cancellation.py)

    def _handler_for(self, jt: JobType) -> Callable[[Job], Awaitable[Any]]:
        executor = self.executor
        if jt.is_async:
            return lambda job: call_handler(jt, job, executor)

        async def in_thread(job: Job) -> Any:
            self._in_thread[job.id] = job
            try:
                result = await call_handler(jt, job, executor)
            finally:
                del self._in_thread[job.id]
                if job.id in self._given_up:
                    raise LeftInProgress
            task = asyncio.current_task()
            if job.id in self._cancel_requests:
                # cancelled (or destroyed) on request while its thread ran: the job settles as
                # cancelled, its return value discarded (docs/admin.md)
                log.info(
                    "%s %s: plain def handler returned after a cancel request; result discarded",
                    job.name,
                    job.id,
                    extra=job_extra(job),
                )
                raise asyncio.CancelledError
            if task is not None and task.cancelling():
                log.warning(
                    "%s %s: plain def handler returned after its timeout or stop; counted as done",
                    job.name,
                    job.id,
                    extra=job_extra(job),
                )
            return result

        return in_thread

    async def wait_threads(self) -> None:
        """Wait until no plain-def handler runs in a thread any more."""
        while self._in_thread:
            waiting = [t for t in self._holding if self._in_thread_now(t)]
            if not waiting:
                return
            await asyncio.wait(waiting, timeout=1.0)

    def give_up(self, jobs: Sequence[Job]) -> None:
        """The process exits without waiting for these thread jobs: whatever their handlers do
        from now on is not recorded (the jobs stay in progress for other pools to recover)."""
        self._given_up.update(job.id for job in jobs)

    def thread_tasks(self, tasks: set[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """Those of ``tasks`` whose job is inside a plain-def handler's thread."""
        return [t for t in tasks if self._in_thread_now(t)]

    def thread_job(self, task: asyncio.Task[None]) -> Job:
        return self._in_thread[self._holding[task]]

    def running_job(self, task: asyncio.Future[None]) -> Job | None:
        """The job whose handler ``task`` runs now; None when it runs none (its handler ended
        and it settles the job, or it gives a job back). By the job's entry in ``running``, not
        by its id alone: while a run settles, a later run of its job may have started here."""
        entry = self.running.get(self._holding.get(task, ""))
        return entry[0] if entry is not None and entry[1] is task else None

    def _in_thread_now(self, task: asyncio.Future[None]) -> bool:
        job = self.running_job(task)
        return job is not None and job.id in self._in_thread
