"""The ends of a job run other than success (the worker's side of them): cancelled (on request,
by the pool's stop, or by the handler itself), suspended at a checkpoint, snoozed, failed, or
left in progress by a plain ``def`` handler that returned after its pool stopped waiting."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..logfmt import describe, job_extra

if TYPE_CHECKING:
    from ..clock import Clock
    from ..errors import RetryLater
    from ..handlers import JobType
    from ..job import Job
    from ..longwork.iterable import Suspend
    from ..store.metrics import Counters
    from .settler import Settler

__all__ = ["Outcomes", "ended_as", "ended_jobs"]

log = logging.getLogger("errands.worker")


def ended_as(what: str) -> str:
    """The activity count (store/metrics.py) a failed attempt ends as, by what the Settler said
    of it: "failed" (retried), "dead" (failed for good), "" (no end: snoozed, left in progress)."""
    if what.startswith("failed ("):
        return "failed"
    return "dead" if what.startswith("failed for good") else ""


def ended_jobs(worker: Outcomes) -> str:
    """``3 jobs``, or ``0 jobs and 2 failed attempts``: what a worker's runs came to, for the
    pool's last log line and the burst summary (the failed attempts of batch handlers are not
    counted)."""
    n, failed = worker.processed, worker.failed_attempts
    done = f"{n} job{'' if n == 1 else 's'}"
    return f"{done} and {failed} failed attempt{'' if failed == 1 else 's'}" if failed else done


class Outcomes:
    """Mixin of Worker: what ``Worker._run`` does when the handler did not return."""

    settler: Settler
    counters: Counters
    clock: Clock
    abandoned: bool
    requeued_on_stop: int
    processed: int  # jobs that succeeded (counted by Worker)
    failed_attempts: int = 0  # attempts whose handler raised (failed, retried or dead)
    _cancelling: bool
    _cancel_requests: dict[str, bool]  # job id -> destroy

    def _left_in_progress(self, job: Job) -> None:
        log.warning(
            "%s %s: its plain def handler returned after this pool stopped waiting for it; "
            "not recorded: the job stays in progress and runs again elsewhere",
            job.name,
            job.id,
            extra=job_extra(job),
        )

    async def _interrupted(
        self, job: Job, jt: JobType, exc: asyncio.CancelledError, started_ms: int
    ) -> None:
        """The handler raised CancelledError: a cancel (requested, or of the pool's stop), or,
        when nobody cancelled the job, a failure of the handler's own."""
        task = asyncio.current_task()
        if job.id in self._cancel_requests or task is None or task.cancelling():
            await self._cancelled(job, started_ms)
            return
        extra = job_extra(job)  # (its attempt, before fail() counts the failure)
        what = await self.settler.fail(job, jt, exc, started_ms)
        log.warning(
            "%s %s %s: the handler raised CancelledError", job.name, job.id, what, extra=extra
        )

    async def _cancelled(self, job: Job, started_ms: int) -> None:
        if self.abandoned:
            log.warning(
                "%s %s cancelled: this pool lost its lease, the job was given to another pool",
                job.name,
                job.id,
                extra=job_extra(job),
            )
            return
        if job.id in self._cancel_requests:
            destroy = self._cancel_requests.pop(job.id)
            await self.settler.cancelled(job, started_ms, destroy)
            log.info("%s %s cancelled on request", job.name, job.id, extra=job_extra(job))
            return
        if not self._cancelling:
            raise asyncio.CancelledError
        await self.settler.requeue(job)
        self.requeued_on_stop += 1
        log.info("%s %s requeued (pool stopping)", job.name, job.id, extra=job_extra(job))

    async def _suspended(self, job: Job, exc: Suspend) -> None:
        """An iterable job stopped at a checkpoint (longwork/iterable.py)."""
        if exc.requeue and not self.abandoned:
            await self.settler.requeue(job, head=True)
            self.requeued_on_stop += 1
        log.info("%s %s suspended: %s", job.name, job.id, exc, extra=job_extra(job))

    async def _snoozed(
        self, job: Job, jt: JobType, exc: RetryLater, started_ms: int, started: float
    ) -> None:
        if not await self.settler.snooze(job, exc):  # (logged: cannot snooze, so failed)
            await self._failed(job, jt, exc, started_ms, started)
            return
        log.info("%s %s snoozed %.3gs", job.name, job.id, exc.delay, extra=job_extra(job))

    async def _failed(
        self, job: Job, jt: JobType, exc: Exception, started_ms: int, started: float
    ) -> None:
        """The handler raised (``started``: its start on ``time.perf_counter()``)."""
        extra = job_extra(job)  # (its attempt, before fail() counts the failure)
        what = await self.settler.fail(job, jt, exc, started_ms)
        self.failed_attempts += 1
        self.counters.ended(ended_as(what) or "dead", self.clock.now())
        log.warning(
            "%s %s %s after %.1fms: %s",
            job.name,
            job.id,
            what,
            (time.perf_counter() - started) * 1000,
            describe(exc),
            extra=extra,
        )
