"""Batch job names, the worker's side (see longwork/batch.py): one loop per batch name watches
its queue and, once ``max_size`` jobs wait or the oldest has waited ``max_wait``, fetches up to
``max_size`` of them with one ``fetch`` script call (into this pool's in-progress set, each job
with its own attempt, as any fetch) and runs them as one task. Jobs that succeeded are
acknowledged through the acker (one ``ack`` script call for the batch, with other pending acks);
the failed ones are settled together in one ``settle`` script call, each as a failed job (retry
or dead set, fenced on its own attempt; a ``RetryLater`` snoozed, no failure counted). Whatever
the handler raised or returned, the batch's task ends with each job settled."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from ..aio import wait_event
from ..clock import Clock, to_ms
from ..errors import RetryLater
from ..handlers import JobType
from ..job import Job
from ..logfmt import describe, job_extra
from ..longwork.batch import BatchRunner, read_outcome
from ..outagelog import OutageLog
from ..serialization import SerializationError, Serializer, dumps_json
from ..store.connection import REDIS_ERRORS
from ..store.scripts import Fetched, FetchResult, LeaseLost, Scripts
from .batchwait import BatchWaiting, Seen
from .lease import gone
from .outcomes import ended_as
from .results import oversized

if TYPE_CHECKING:
    from ..store.keys import Keys
    from ..store.metrics import Counters
    from .lease import Lease
    from .settler import Settler

__all__ = ["Batching", "batch_types"]

log = logging.getLogger("errands.worker")


def batch_types(job_types: dict[str, JobType]) -> dict[str, JobType]:
    """The job types registered with ``@pool.batch_job``."""
    return {n: jt for n, jt in job_types.items() if isinstance(jt.handler, BatchRunner)}


class _Batch:
    """The jobs of one batch run (for the orphan reclaim: they are held here), and the suspect
    among them, if any (fetch.lua: a job taken back from dead pools ``isolate_recovered`` times,
    at most one of which a pool runs at a time)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.suspects: set[str] = set()


class Batching(BatchWaiting):
    """Mixin of Worker: the batch loops, started by ``run`` and ended by ``stop_fetching``
    (idle while the worker is quiet: quieting.py)."""

    pool_id: str
    scripts: Scripts
    keys: Keys
    clock: Clock
    serializer: Serializer
    settler: Settler
    counters: Counters
    lease: Lease | None
    job_types: dict[str, JobType]
    context: dict[str, Any]
    poll_interval: float
    dead_timeout_ms: int
    isolate_recovered: int
    _suspects: set[str | asyncio.Future[Any]]
    tasks: set[asyncio.Task[None]]
    wake: asyncio.Event
    _slot_freed: asyncio.Event
    _stopping: bool
    _quiet: bool
    _cancelling: bool
    _reclaim: bool
    abandoned: bool
    processed: int
    requeued_on_stop: int
    _batches: list[_Batch]
    _batch_stop: asyncio.Event
    # the batch fetches in flight (their jobs not yet held by a batch), each done when it ends
    _batch_inflight: set[asyncio.Future[None]]

    if TYPE_CHECKING:  # provided by Worker and the Fetching and Quieting mixins

        def _give_back(self, name: str, item: Fetched) -> None: ...

        def _suspects_told(self) -> int: ...

        def _suspect_fetched(self, told: int) -> None: ...

        def _note_skipped(self, got: FetchResult | None, order: list[tuple[str, int]]) -> None: ...

        async def _batch_quiet(self) -> None: ...

        def _spawn(
            self, coro: Coroutine[Any, Any, None], job: Job | None, job_id: str = ""
        ) -> None: ...

        def _ack(
            self, job: Job, jt: JobType, encoded: bytes, started_ms: int, ran_ms: float
        ) -> None: ...

    def batch_holding(self) -> Iterator[str]:
        for batch in self._batches:
            yield from batch.ids

    async def _batch_loops(self) -> None:
        types = list(batch_types(self.job_types).values())
        self._batch_wakes = tuple(asyncio.Event() for _ in types)
        self._batch_seen = tuple((jt.name, Seen()) for jt in types)
        loops = [
            self._batch_loop(jt, wake, seen)
            for jt, wake, (_, seen) in zip(types, self._batch_wakes, self._batch_seen, strict=True)
        ]
        if loops:
            await asyncio.gather(*loops)

    async def _batch_loop(self, jt: JobType, wake: asyncio.Event, seen: Seen) -> None:
        """One batch name's loop: it looks at its queue when woken (``wake``: batchwait.py),
        when its batch is due, and every ``poll_interval`` at most."""
        runner = jt.handler
        assert isinstance(runner, BatchRunner)
        poll = min(max(runner.max_wait / 4, 0.05), self.poll_interval)
        delay = 0.05
        outage = OutageLog(log, f"batch fetch of {jt.name}")
        while not self._stopping:
            if self._quiet:  # (quieting.py: no fetch, no idle mark until resumed)
                await self._batch_unmark_quietly(jt.name, seen)
                await self._batch_quiet()
                continue
            try:
                wake.clear()  # (a wake-up from here on: the look may have missed its job)
                due = await self._batch_due(jt.name, runner, seen)
                if seen.paused:  # (no fetch: its unpause wakes the pools)
                    due = math.inf
                if due > 0:
                    await self._batch_sleep(wake, min(due, self.poll_interval))
                    continue
                fetched, batch = await self._batch_fetch(jt, runner)
                seen.fetched({item.id for item in fetched}, self.clock.now())
                seen.marked = len(fetched) < runner.max_size  # (lua/fetch.lua's marks)
            except LeaseLost:
                if self.lease is not None:
                    self.lease.lose(gone("batch fetch"))
                return
            except Exception as exc:
                self._reclaim = True  # a batch fetch whose reply was lost
                if isinstance(exc, REDIS_ERRORS):
                    outage.failed(exc)
                else:
                    log.warning("batch fetch of %s failed (%r); retrying", jt.name, exc)
                await wait_event(self._batch_stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            outage.ok()
            if not fetched:  # (due, none taken: held back by its limits)
                self._batch_over(batch)
                await self._batch_sleep(wake, poll)
                continue
            await self._batch_start(jt, runner, fetched, batch, seen)
        await self._batch_unmark_quietly(jt.name, seen)

    async def _batch_start(
        self, jt: JobType, runner: BatchRunner, fetched: list[Fetched], batch: _Batch, seen: Seen
    ) -> None:
        """(a batch loop) Run the batch fetched, its idle mark taken away meanwhile, and wait
        for its end (or the pool's stop)."""
        if len(fetched) == runner.max_size:
            # a full fetch took the pool's idle mark (lua/fetch.lua): the fetch loop, maybe
            # waiting for a wake-up of the other names, looks again and puts it back
            self.wake.set()
        if self._stopping or self._quiet:  # (began meanwhile: back on their queues)
            for item in fetched:
                self._give_back(jt.name, item)
            self._batch_over(batch)
            return
        task = asyncio.ensure_future(self._run_batch(jt, runner, fetched, batch))
        self.tasks.add(task)
        task.add_done_callback(self._batch_done)
        await self._batch_unmark_quietly(jt.name, seen)  # (it waits for no wake-up meanwhile)
        if len(fetched) == runner.max_size:
            try:  # (the jobs it left: batchwait.py)
                await self._batch_pass_on(jt.name)
            except REDIS_ERRORS as exc:
                log.info("batch name %s: no idle pool woken for its jobs left (%r)", jt.name, exc)
        stop = asyncio.ensure_future(self._batch_stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()

    async def _batch_unmark_quietly(self, name: str, seen: Seen) -> None:
        """``_batch_unmark``, its Redis error only logged (the mark lapses by its deadline)."""
        try:
            await self._batch_unmark(name, seen)
        except REDIS_ERRORS as exc:
            log.info("idle mark of batch name %s not taken away (%r)", name, exc)

    async def _batch_fetch(self, jt: JobType, runner: BatchRunner) -> tuple[list[Fetched], _Batch]:
        """One fetch for a batch, its jobs held by the batch as soon as the reply is read (in
        the same turn of the loop): the orphan sweep (orphans.py) counts them as this worker's
        from then on, and waits for the fetches in flight when it read the in-progress set."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch_inflight.add(ended)
        told = self._suspects_told()
        try:
            result = await self.scripts.fetch(
                self.pool_id,
                to_ms(self.clock.now()),
                runner.max_size,
                [(jt.name, jt.max_concurrency)],
                self.isolate_recovered,
                suspects=told,
                dead_timeout_ms=self.dead_timeout_ms,
                specs={jt.name: jt.limit_spec},
                idle_ms=self.idle_ms,  # (its mark lasts as the looks' do: batchwait.py)
            )
            self._note_skipped(result, [(jt.name, jt.max_concurrency)])
            fetched: list[Fetched] = result or []
            batch = _Batch()
            batch.ids.update(item.id for item in fetched)
            batch.suspects.update(item.id for item in fetched if item.suspect)
            self._suspects.update(batch.suspects)  # (released as the batch ends: _batch_over)
            self._batches.append(batch)
            return fetched, batch
        finally:
            self._suspect_fetched(told)
            self._batch_inflight.discard(ended)
            ended.set_result(None)

    def _batch_over(self, batch: _Batch) -> None:
        """The batch's jobs are no longer held by it (run, or each handed to a task that gives
        it back or buries it, the suspect's mark passed on with it: loop.py's _spawn)."""
        self._batches.remove(batch)
        if batch.suspects:
            self._suspects.difference_update(batch.suspects)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("errands internal error in a batch task", exc_info=task.exception())

    def _batch_jobs(self, jt: JobType, fetched: list[Fetched]) -> list[Job]:
        jobs = []
        for item in fetched:
            try:
                job = Job.from_envelope(item.id, self.serializer.loads(item.envelope))
                if job.name != jt.name:
                    raise ValueError(f"envelope names job {job.name!r}, not {jt.name!r}")
            except Exception as exc:
                coro = self.settler.bury_corrupt(item, jt.name, f"undecodable payload: {exc}")
                self._spawn(coro, None, item.id)
                continue
            job.context, job._backend = self.context, self
            job._raw, job._attempt = item.envelope, item.token
            jobs.append(job)
        return jobs

    async def _run_batch(
        self, jt: JobType, runner: BatchRunner, fetched: list[Fetched], batch: _Batch
    ) -> None:
        try:
            await self._batch(jt, runner, self._batch_jobs(jt, fetched))
        finally:
            self._batch_over(batch)

    async def _batch(self, jt: JobType, runner: BatchRunner, jobs: list[Job]) -> None:
        """Run one batch and settle each of its jobs; whatever the handler did or returned, the
        task ends with every job settled (or left to the pool's stop)."""
        if not jobs:
            return
        started = time.perf_counter()
        started_ms = to_ms(self.clock.now())
        self._count_starts(jt, jobs)
        scope: asyncio.Timeout | None = None
        try:
            async with asyncio.timeout(jt.timeout) as scope:
                # a list of its own: the handler may empty it (``while jobs: jobs.pop()``),
                # and the jobs settled below are the batch's, whatever it left there
                outcome = await runner.fn(list(jobs))
            # read here: an outcome that cannot be read fails the batch, never its task
            failed, results = read_outcome(outcome, {job.id for job in jobs})
            encoded = {j.id: _result(j, results.get(j.id)) for j in jobs if j.id not in failed}
            failed |= oversized(jt, encoded)  # (over max_result: failed for good, one by one)
        except asyncio.CancelledError as exc:
            await self._batch_interrupted(jt, jobs, exc, started_ms)
            return
        except Exception as exc:  # (a RetryLater snoozes every job: settler.fail_many)
            if isinstance(exc, TimeoutError) and scope is not None and scope.expired():
                exc = TimeoutError(f"timed out after {jt.timeout:g}s")  # (as a plain job's)
            await self._batch_failed(jt, jobs, exc, started_ms)
            return
        ran_ms = (time.perf_counter() - started) * 1000
        now = self.clock.now()
        for job in jobs:
            if job.id in encoded:
                self.processed += 1
                self.counters.ended("done", now)
                self._ack(job, jt, encoded[job.id], started_ms, ran_ms)
        # the failed (or snoozed) jobs of the batch: settled in one script call
        ended = [(job, failed[job.id]) for job in jobs if job.id in failed]
        extras = [job_extra(job) for job, _error in ended]  # (before fail_many counts a failure)
        whats = await self.settler.fail_many(jt, ended, started_ms)
        self._count_ends(whats)
        for (job, error), what, extra in zip(ended, whats, extras, strict=True):
            level = logging.INFO if isinstance(error, RetryLater) else logging.WARNING
            log.log(level, "%s %s %s: %r", job.name, job.id, what, error, extra=extra)

    async def _batch_failed(
        self, jt: JobType, jobs: list[Job], exc: BaseException, started_ms: int
    ) -> None:
        """The handler raised (or returned what cannot be read): every job of the batch fails
        (snoozed, no failure counted, for a RetryLater), in one script call."""
        self._count_ends(await self.settler.fail_many(jt, [(job, exc) for job in jobs], started_ms))
        n = len(jobs)
        if isinstance(exc, RetryLater):
            why = describe(exc, named=False)
            log.info("%s: a batch of %d snoozed %.3gs (%s)", jt.name, n, exc.delay, why)
        else:
            log.warning("%s: a batch of %d failed: %s", jt.name, n, describe(exc))

    def _count_starts(self, jt: JobType, jobs: list[Job]) -> None:
        """The activity counts (store/metrics.py) of a batch's start: each job's, with its wait
        since its enqueue or due time, the later (as a plain job's: loop.py)."""
        now = self.clock.now()
        for job in jobs:
            self.counters.started(jt.name, now - max(job.enqueued_at, job.run_at or 0.0), now)

    def _count_ends(self, whats: list[str]) -> None:
        """The activity counts of a batch's failed jobs, by what ``fail_many`` said of each:
        failed (retried) or dead (a snooze, or a job left in progress, is no end)."""
        now = self.clock.now()
        for end in filter(None, map(ended_as, whats)):
            self.counters.ended(end, now)

    async def _batch_interrupted(
        self, jt: JobType, jobs: list[Job], exc: asyncio.CancelledError, started_ms: int
    ) -> None:
        """The handler raised CancelledError: the pool's stop with the grace over (its jobs
        requeued) or its lease lost (left to the pool that takes them); else, when nobody
        cancelled the task, a failure of the handler's own (as a plain job's: outcomes.py)."""
        if self.abandoned:
            return
        if self._cancelling:
            # the pool stops and the grace is over: back on their queues (SETTLE_MAX a call)
            await self.settler.requeue(*jobs)
            self.requeued_on_stop += len(jobs)
            log.info("%s: a batch of %d requeued (pool stopping)", jt.name, len(jobs))
            return
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise exc
        await self._batch_failed(jt, jobs, exc, started_ms)


def _result(job: Job, value: Any) -> bytes:
    """A job's entry of ``BatchOutcome.results`` as JSON (null, with a warning, when JSON cannot
    hold it: the job succeeded all the same)."""
    try:
        return dumps_json(value, "the result")
    except SerializationError as exc:
        log.warning("%s %s: %s; stored as null", job.name, job.id, exc, extra=job_extra(job))
        return b"null"
