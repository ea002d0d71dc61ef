"""The worker: fetch a batch -> run each job -> ack, retry, bury or requeue it.

One Worker serves one pool. It keeps at most ``concurrency`` jobs running as asyncio tasks,
fetches with one Lua call per batch, and acknowledges finished jobs in batches.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from .clock import Clock, to_ms
from .connection import REDIS_ERRORS
from .errors import NonRetryableError, RetryLater
from .handlers import JobType, call_handler
from .job import Job
from .keys import Keys
from .middleware import ProcessMiddleware, chain
from .scripts import Fetched, Scripts
from .serialization import Serializer

__all__ = ["Worker"]

log = logging.getLogger("errands.worker")


class Worker:
    """Runs the jobs of one pool. Construct, ``await run()`` as a task, ``stop()`` to finish."""

    def __init__(
        self,
        *,
        pool_id: str,
        scripts: Scripts,
        serializer: Serializer,
        clock: Clock,
        job_types: dict[str, JobType],
        middleware: Sequence[ProcessMiddleware],
        concurrency: int,
        context: dict[str, Any],
        executor: Executor | None,
        wake: asyncio.Event,
        poll_interval: float = 1.0,
        dead_max_jobs: int = 10_000,
        dead_max_age: float = 180 * 86400.0,
    ) -> None:
        self.pool_id = pool_id
        self.scripts = scripts
        self.keys: Keys = scripts.keys
        self.serializer = serializer
        self.clock = clock
        self.job_types = job_types
        self.concurrency = concurrency
        self.batch = max(1, min(concurrency, 256))
        self.context = context
        self.executor = executor
        self.wake = wake
        self.poll_interval = poll_interval
        self.dead_max_jobs = dead_max_jobs
        self.dead_max_age = dead_max_age
        self._runners: dict[str, Callable[[Job], Awaitable[Any]]] = {}
        for name, jt in job_types.items():
            self._runners[name] = chain(middleware, self._handler_for(jt))
        self._weights = [(name, jt.priority, jt.max_concurrency) for name, jt in job_types.items()]
        self._rng = random.Random()
        self.tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._acks: list[tuple[str, str]] = []
        self._ack_wake = False
        self._ack_event = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self._stopping = False
        self._cancelling = False
        self.processed = 0
        self.last_fetch_empty = False

    # -- public ------------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        return len(self.tasks)

    async def run(self) -> None:
        """Fetch and start jobs until ``stop_fetching``; runs the ack flusher alongside."""
        self._acker = asyncio.create_task(self._ack_loop(), name="errands-acker")
        await self._fetch_loop()

    def stop_fetching(self) -> None:
        self._stopping = True
        self._slot_freed.set()
        self.wake.set()

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no job runs; False on timeout."""
        if not self.tasks:
            return True
        _done, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return not pending

    async def cancel_running(self, timeout: float) -> int:
        """Cancel running jobs (graceful stop ran out); they go back on their queues."""
        self._cancelling = True
        tasks = set(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                log.error("job task %s ignores cancellation; leaving it running", task.get_name())
        return len(tasks)

    # -- fetching ----------------------------------------------------------------------------
    def _order(self) -> list[tuple[str, int]]:
        """Job names in the order to try them: weighted random sampling by job-type priority."""
        items = self._weights
        if len(items) == 1:
            return [(items[0][0], items[0][2])]
        pool = list(items)
        order: list[tuple[str, int]] = []
        while pool:
            total = sum(w for _n, w, _c in pool)
            pick = self._rng.random() * total
            for i, (name, weight, limit) in enumerate(pool):
                pick -= weight
                if pick < 0 or i == len(pool) - 1:
                    order.append((name, limit))
                    pool.pop(i)
                    break
        return order

    async def _fetch_loop(self) -> None:
        delay = 0.05
        while not self._stopping:
            free = self.concurrency - len(self.tasks)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self.wake.clear()
            order = self._order()
            try:
                fetched = await self.scripts.fetch(
                    self.pool_id, to_ms(self.clock.now()), min(free, self.batch), order
                )
            except REDIS_ERRORS as exc:
                log.warning("fetch failed (%s); retrying in %.2fs", exc, delay)
                await self._pause(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self.last_fetch_empty = not fetched
            if not fetched:
                await self._pause(self.poll_interval, self.wake)
                continue
            for item in fetched:
                self._start(order[item.queue_index - 1][0], item)

    async def _pause(self, seconds: float, event: asyncio.Event | None = None) -> None:
        """Sleep, waking early when ``event`` (or a stop) is set."""
        waiter = event or self._slot_freed
        try:
            async with asyncio.timeout(seconds):
                await waiter.wait()
        except TimeoutError:
            pass

    def _start(self, name: str, item: Fetched) -> None:
        try:
            job = Job.from_envelope(item.id, self.serializer.loads(item.envelope))
        except Exception as exc:
            self._spawn(self._bury_corrupt(item.id, name, f"undecodable payload: {exc}"))
            return
        if job.name != name:
            reason = f"envelope names job {job.name!r} but it was on the {name!r} queue"
            self._spawn(self._bury_corrupt(item.id, name, reason))
            return
        job.context = self.context
        self._spawn(self._run(job, self.job_types[name]))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("errands internal error in a job task", exc_info=task.exception())

    # -- running -----------------------------------------------------------------------------
    def _handler_for(self, jt: JobType) -> Callable[[Job], Awaitable[Any]]:
        executor = self.executor

        def invoke(job: Job) -> Awaitable[Any]:
            return call_handler(jt, job, executor)

        return invoke

    async def _run(self, job: Job, jt: JobType) -> None:
        started = time.perf_counter()
        runner = self._runners[job.name]
        scope: asyncio.Timeout | None = None
        try:
            if jt.timeout is None:
                await runner(job)
            else:
                async with asyncio.timeout(jt.timeout) as scope:
                    await runner(job)
        except asyncio.CancelledError:
            if not self._cancelling:
                raise
            await self._settle_retrying(job, "requeue", self.keys.queue(job.name))
            log.info(
                "%s %s requeued (pool stopping) after %.1fms",
                job.name,
                job.id,
                (time.perf_counter() - started) * 1000,
            )
            return
        except RetryLater as exc:
            await self._snooze(job, exc.delay)
            log.info("%s %s snoozed %.3gs", job.name, job.id, exc.delay)
            return
        except Exception as exc:
            if isinstance(exc, TimeoutError) and scope is not None and scope.expired():
                exc = TimeoutError(f"timed out after {jt.timeout:g}s")
            await self._fail(job, jt, exc, started)
            return
        self.processed += 1
        self._acks.append((job.id, job.name))
        if jt.max_concurrency:
            self._ack_wake = True
        self._ack_event.set()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s done in %.1fms", job.name, job.id, (time.perf_counter() - started) * 1000
            )

    async def _snooze(self, job: Job, delay: float) -> None:
        if delay <= 0:
            await self._settle_retrying(job, "requeue", self.keys.queue(job.name))
            return
        due = to_ms(self.clock.now() + delay)
        await self._settle_retrying(job, "later", self.keys.scheduled(job.name), score_ms=due)

    async def _fail(self, job: Job, jt: JobType, exc: BaseException, started: float) -> None:
        now = self.clock.now()
        job.fails += 1
        max_fails = int((job.retry or {}).get("max_fails", jt.max_fails))
        error = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc))[-8000:],
            "at": now,
            "attempt": job.fails,
        }
        final = job.fails >= max_fails or isinstance(exc, NonRetryableError)
        envelope = self.serializer.dumps(job.envelope())
        took = (time.perf_counter() - started) * 1000
        if not final:
            backoff = _backoff_for(job, jt)
            due = to_ms(now + backoff.delay(job.fails))
            await self._settle_retrying(
                job,
                "retry",
                self.keys.retry(job.name),
                envelope=envelope,
                score_ms=due,
                error=self.serializer.dumps(error),
                counter="failed",
            )
            log.warning(
                "%s %s failed (attempt %d of %d, retry in %.1fs) after %.1fms: %s",
                job.name,
                job.id,
                job.fails,
                max_fails,
                due / 1000 - now,
                took,
                error["error"],
            )
            return
        mode = "drop" if jt.skip_dead else "dead"
        await self._settle_retrying(
            job,
            mode,
            self.keys.dead,
            envelope=envelope,
            score_ms=to_ms(now),
            error=self.serializer.dumps(error),
            counter="dead",
        )
        log.warning(
            "%s %s failed for good (attempt %d, %s) after %.1fms: %s",
            job.name,
            job.id,
            job.fails,
            "dropped" if jt.skip_dead else "dead",
            took,
            error["error"],
        )

    async def _bury_corrupt(self, job_id: str, name: str, reason: str) -> None:
        error = self.serializer.dumps({"error": reason, "at": self.clock.now(), "attempt": 0})
        log.error("%s %s buried: %s", name, job_id, reason)
        await self._settle_raw(
            job_id,
            name,
            "dead",
            self.keys.dead,
            score_ms=to_ms(self.clock.now()),
            error=error,
            counter="dead",
        )

    async def _settle_retrying(self, job: Job, mode: str, target: str, **kw: Any) -> None:
        await self._settle_raw(job.id, job.name, mode, target, **kw)

    async def _settle_raw(self, job_id: str, name: str, mode: str, target: str, **kw: Any) -> None:
        """Settle a job, retrying while Redis is away. If it never comes back, the job stays in
        this pool's in-progress set and the reaper gives it back once this pool is gone."""
        delay = 0.05
        kw.setdefault("dead_max", self.dead_max_jobs)
        kw.setdefault("dead_min_ms", to_ms(self.clock.now() - self.dead_max_age))
        for _attempt in range(60):
            try:
                await self.scripts.settle(self.pool_id, job_id, name, mode, target=target, **kw)
                return
            except REDIS_ERRORS as exc:
                log.warning("could not settle %s %s (%s); retrying", name, job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("gave up settling %s %s; the reaper will recover it", name, job_id)

    # -- acknowledging -----------------------------------------------------------------------
    async def _ack_loop(self) -> None:
        while True:
            await self._ack_event.wait()
            self._ack_event.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        delay = 0.05
        while self._acks:
            batch, self._acks = self._acks, []
            wake, self._ack_wake = self._ack_wake, False
            try:
                await self.scripts.ack(self.pool_id, batch, wake)
            except REDIS_ERRORS as exc:
                self._acks[:0] = batch
                self._ack_wake = self._ack_wake or wake
                log.warning("ack of %d jobs failed (%s); retrying in %.2fs", len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self, timeout: float = 10.0) -> None:
        """Flush remaining acks and stop the ack flusher."""
        acker = self._acker
        if acker is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._flush_acks()
        except TimeoutError:
            log.error(
                "could not flush %d acks; the reaper will recover those jobs", len(self._acks)
            )
        acker.cancel()
        await asyncio.gather(acker, return_exceptions=True)


def _backoff_for(job: Job, jt: JobType) -> Any:
    spec = (job.retry or {}).get("backoff")
    if spec:
        from .backoff import backoff_from_dict

        try:
            return backoff_from_dict(spec)
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s %s has an invalid per-job backoff %r; using the job type's",
                job.name,
                job.id,
                spec,
            )
    return jt.backoff
