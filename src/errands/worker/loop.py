"""The worker: fetch a batch -> run each job -> ack, retry, bury or requeue it.

One Worker serves one pool. It keeps at most ``concurrency`` jobs running as asyncio tasks,
fetches with one Lua call per batch, and acknowledges finished jobs in batches.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from typing import Any

import orjson

from ..clock import Clock, SystemClock
from ..errors import RetryLater
from ..handlers import JobType, _current_job
from ..job import Job, job_from_envelope
from ..logfmt import job_extra
from ..longwork.iterable import Suspend
from ..middleware import ProcessMiddleware, chain
from ..serialization import JSONSerializer, Serializer
from ..store.metrics import Counters
from ..store.scripts import Acked, Fetched, Scripts
from .acker import Acker
from .batching import Batching, batch_types
from .cancellation import CancelRequests
from .fetching import Fetching, fetch_outage
from .jobcalls import JobCalls
from .lease import Lease
from .lookahead import Lookahead
from .mailbox import Mailbox
from .outcomes import Outcomes
from .settler import HISTORY_ARGS_MAX, Settler, encode_result, history_json
from .stopping import Stopping
from .threadjobs import LeftInProgress, ThreadJobs

__all__ = ["Worker"]

log = logging.getLogger("errands.worker")


class Worker(
    CancelRequests, Lookahead, Fetching, ThreadJobs, Batching, Stopping, Outcomes, JobCalls
):
    """Runs the jobs of one pool. Construct, ``await run()`` as a task, ``stop_fetching()``,
    ``wait_idle()`` / ``cancel_running()``, then ``close()``."""

    def __init__(
        self,
        *,
        pool_id: str,
        scripts: Scripts,
        settler: Settler,
        serializer: Serializer,
        clock: Clock,
        job_types: dict[str, JobType],
        middleware: Sequence[ProcessMiddleware],
        concurrency: int,
        context: dict[str, Any],
        executor: Executor | None,
        wake: asyncio.Event,
        poll_interval: float = 1.0,
        history: bool = True,
        isolate_recovered: int = 0,
        lease: Lease | None = None,
    ) -> None:
        self.pool_id = pool_id
        self.scripts = scripts
        self.settler = settler
        self.keys = scripts.keys
        self.serializer = serializer
        self.clock = clock
        # the clock read three times a job (_start, _run): SystemClock.now's time.time() called
        # without its method's frame (~300 CPU instructions a read)
        self._now: Callable[[], float] = time.time if type(clock) is SystemClock else clock.now
        self.job_types = job_types
        self.concurrency = concurrency
        self.batch = max(1, min(concurrency, 256))
        self.context = context
        self.executor = executor
        self.wake = wake
        self.poll_interval = poll_interval
        self.history = history
        self.isolate_recovered = isolate_recovered  # see lua/fetch.lua
        self.lease = lease
        self.dead_timeout_ms = int((lease.dead_timeout if lease else 10.0) * 1000)
        # the records (result, history) embed the envelope: as JSON when it is not stored so
        self.json_records = not isinstance(serializer, JSONSerializer)
        # JSONSerializer's own: its loads' orjson.loads called without its method (_start)
        self._json = type(serializer) is JSONSerializer
        self._init_runners(job_types, middleware)
        self._init_job_tasks()
        self._init_progress()

    def _init_runners(
        self, job_types: dict[str, JobType], middleware: Sequence[ProcessMiddleware]
    ) -> None:
        """(__init__) The handlers of the plain job types, their limits, the batch loops'."""
        # batch job names are fetched and run by their own loops (batching.py)
        plain = {n: jt for n, jt in job_types.items() if n not in batch_types(job_types)}
        self._runners: dict[str, Callable[[Job], Awaitable[Any]]] = {
            name: chain(middleware, self._handler_for(jt)) for name, jt in plain.items()
        }
        self._plain = plain
        # without middleware, the job types whose runner is call_handler's first branch (an async
        # handler taking just the job): _run awaits it itself, without the runner's lambda and
        # call_handler's coroutine (a call, a coroutine and a layer under each await, a job)
        bare = {n: jt for n, jt in plain.items() if jt.binder is None and jt.is_async}
        self._bare: dict[str, JobType] = {} if middleware else bare
        self.limits_changed()
        self._batches = []
        self._batch_stop = asyncio.Event()
        self._batch_inflight: set[asyncio.Future[None]] = set()

    def _init_job_tasks(self) -> None:
        """(__init__) The job tasks, what is known of them, and the jobs fetched ahead."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.running: dict[str, tuple[Job, asyncio.Task[Any]]] = {}
        self._cancel_requests: dict[str, bool] = {}  # job id -> destroy
        self._early_cancels: dict[str, tuple[bool, float]] = {}  # id -> (destroy, monotonic)
        self._confirming: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        # what every job task starts from (the pool's start): a job started in the slot another
        # job's task freed (_run) must not see the context that job's handler left
        self._job_context = contextvars.copy_context()
        # the loop the pool runs in, taken at its first job (asyncio.get_running_loop() costs a
        # getpid() system call on Python 3.11, ~150 ns: 1.5 a job were ~1 % of a 1-I/O job's CPU)
        self._job_loop: asyncio.AbstractEventLoop | None = None
        # jobs fetched ahead of free slots (see lookahead.py), started the moment a slot frees
        self.buffer: deque[tuple[str, Fetched, float]] = deque()
        self._mean_run = float("inf")  # moving mean of handler run time, seconds
        # of running jobs: their task -> monotonic start (by task, not job id: a later run of a
        # job may start here while the run before settles, and the end of that one is not its)
        self._started_at: dict[asyncio.Future[Any], float] = {}
        # held jobs that crashed pools before (lua/fetch.lua): the id of one fetched, the task of
        # one started (so that the end of a run leaves alone a later run of its job, by then
        # fetched again, marked by its id: _spawn)
        self._suspects: set[str | asyncio.Future[Any]] = set()
        # jobs (by id()) whose handler ended inside the create_task of their own task (an eager
        # task factory runs a task's first step there), before _spawn could note them running
        self._ended_unheld: set[int] = set()
        # (bound once: a job task's done callback is added and taken off, a bound method each)
        self._done_callback = self._task_done

    def _init_progress(self) -> None:
        """(__init__) The acks, the state of the fetch loop and of the stop, the counts."""
        self.acker = Acker(self.scripts, self.pool_id, self.clock, self.history)
        # job id of every live job task: with the pending acks, the jobs this worker holds
        self._holding: dict[asyncio.Future[None], str] = {}
        self._reclaim = False  # a Redis call failed: look for jobs moved here unbeknownst
        self.reclaim_interval = 10.0
        self.parked_interval = 60.0  # parked acks and settles sent again (resend_parked)
        self.reclaimed = 0
        self._stopping = False
        self._cancelling = False
        self.abandoned = False  # the lease is lost: nothing is settled or acked here any more
        self._expired_since: float | None = None
        self._fetch_outage = fetch_outage()
        self._in_thread: dict[str, Job] = {}
        self._given_up: set[str] = set()
        self.requeued_on_stop = 0
        self.processed = 0
        self.last_fetch_empty = False
        self._marked_idle = False  # the last fetch got fewer jobs than asked for (lua/fetch.lua)
        self.counters = Counters()  # activity for charts (store/metrics.py)
        self.mailbox = Mailbox(self)  # jobs handed to this pool by enqueues
        self._unmarked = asyncio.Event()  # the fetch loop ended and took its idle marks away

    # -- public ------------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        return len(self.tasks)

    @property
    def stopping(self) -> bool:
        """The pool stops (or lost its lease): iterable jobs stop at their next item."""
        return self._stopping

    @property
    def settled(self) -> bool:
        """No job runs and every finished job has been acknowledged."""
        return not self.tasks and not self.buffer and self.acker.idle

    async def run(self) -> None:
        """Fetch and start jobs until ``stop_fetching``; runs the ack flusher alongside."""
        self.acker.start()
        self.counters.start(self.scripts.redis, self.keys)
        async with self.limit_watch():
            # each runs until the worker stops: one that fails must not end this task (and
            # the limit watch) while the others run on, unseen by the pool's stop
            ended = await asyncio.gather(
                self._fetch_loop(),
                self._batch_loops(),
                self.mailbox.run(self._unmarked),
                return_exceptions=True,
            )
        for exc in ended:
            if isinstance(exc, BaseException):
                log.error("errands internal error in a worker loop", exc_info=exc)

    def _start(self, name: str, item: Fetched) -> None:
        raw = item.envelope
        try:
            try:  # (JSONSerializer.loads without its call: what it returns; else its call
                env = orjson.loads(raw) if self._json else None  # raises its error, below)
            except Exception:  # (not contextlib.suppress: ~1,000 CPU instructions a job)
                env = None
            if type(env) is not dict:
                env = self.serializer.loads(raw)
            job = job_from_envelope(item.id, env)
            if job.name != name:
                raise ValueError(
                    f"envelope names job {job.name!r} but it was on the {name!r} queue"
                )
        except Exception as exc:
            reason = f"undecodable payload: {exc}"
            self._spawn(self.settler.bury_corrupt(item, name, reason), None, item.id)
            return
        job._context = self.context  # (its context setter's)
        job._backend = self
        job._raw = raw
        job._attempt = item.token
        now = self._now()
        # waited since its enqueue or due time, the later (max()'s call: ~800 CPU instructions)
        since, run_at = job.enqueued_at, job.run_at or 0.0
        if run_at > since:
            since = run_at
        self.counters.started(name, now - since, now)
        self._spawn(self._run(job, self.job_types[name]), job)
        early = self._early_cancels.pop(job.id, None) if self._early_cancels else None
        if early is not None and time.monotonic() - early[1] < 10.0:
            self.confirm_early_cancel(job.id)

    def _spawn(self, coro: Coroutine[Any, Any, None], job: Job | None, job_id: str = "") -> None:
        # a Task copies the context it is created in: each job gets its own copy of the pool's,
        # and no context= reaches an application's task factory (an older (loop, coro) one). A
        # copy is entered, not the pool's context itself: an eager task factory runs the job's
        # first step inside create_task, and a job ending there starts the next one (_run)
        if job is not None:
            job_id = job.id
        try:
            loop = self._job_loop or self._take_loop()
            task = self._job_context.copy().run(loop.create_task, coro)
        except BaseException:  # (an application's task factory raised: the job is not held)
            if self._suspects:
                self._suspects.discard(job_id)  # else fetch.lua isolates this pool for good
            if self._ended_unheld and job is not None:
                self._ended_unheld.discard(id(job))
            raise
        self.tasks.add(task)
        self._holding[task] = job_id
        if self._suspects and job_id in self._suspects:  # (none, most often: no call)
            self._suspects.discard(job_id)  # its mark passes to the task (see _init_job_tasks)
            self._suspects.add(task)
        if job is None:
            pass
        elif self._ended_unheld and id(job) in self._ended_unheld:
            # its handler ended inside create_task (an eager factory ran it): not running, even
            # while its task, not done, settles it (noted, it stayed in running for good)
            self._ended_unheld.discard(id(job))
        elif not task.done():  # (an eager factory may have run it to its end)
            self.running[job_id] = (job, task)
            self._started_at[task] = time.monotonic()
        task.add_done_callback(self._done_callback)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._holding.pop(task, None)
        if task in self.tasks:  # (not when its job succeeded: its slot freed as it ended, _run)
            self._free_slot(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("errands internal error in a job task", exc_info=task.exception())

    def _free_slot(self, task: asyncio.Future[Any]) -> None:
        """The task no longer counts against the concurrency: the next job held ahead starts."""
        self.tasks.discard(task)
        if self._suspects:  # (none, most often: no call)
            self._suspects.discard(task)
        self._started_at.pop(task, None)
        if self.buffer and not self._stopping and len(self.tasks) < self.concurrency:
            self.start_held()
        if self._stopping or len(self.tasks) < self.concurrency:
            self._slot_freed.set()  # a slot waits for the fetch loop
        elif not self._slot_freed.is_set():
            # every slot taken again: the fetch loop, refilling the buffer, is woken a turn of
            # the event loop later, after the jobs started in this turn reached their first
            # await (a batch of short jobs ends together: the fetch is not what they wait for)
            (self._job_loop or self._take_loop()).call_soon(self._slot_freed.set)

    def _take_loop(self) -> asyncio.AbstractEventLoop:
        self._job_loop = asyncio.get_running_loop()
        return self._job_loop

    # -- running -----------------------------------------------------------------------------
    async def _run(self, job: Job, jt: JobType) -> None:
        started = time.perf_counter()
        started_ms = int(self._now() * 1000)  # (to_ms)
        scope: asyncio.Timeout | None = None
        limit = job.timeout if job.timeout is not None else jt.timeout  # per job, else per type
        bare = self._bare.get(job.name)
        try:
            try:
                if bare is None:  # (a plain middleware's synchronous part runs before the timeout)
                    call = self._runners[job.name](job)
                else:  # (call_handler(bare, job, ...) without its coroutine: see _init_runners)
                    _current_job.set(job)
                    call = bare.handler(job)
                if limit is None:
                    result = await call
                else:
                    async with asyncio.timeout(limit) as scope:
                        result = await call
                # (most handlers return nothing: encode_result's first answer, without its call)
                encoded = b"null" if result is None else encode_result(job, jt, result)
            finally:
                # from here on a cancel request no longer reaches the task: it must not
                # interrupt the settling of the job
                held = self.running.pop(job.id, None)
                # (ended inside create_task, an eager task factory's, before _spawn noted it:
                # its task not among ours yet; not a later run's entry taken by an earlier run)
                if held is None and asyncio.current_task() not in self.tasks:
                    self._ended_unheld.add(id(job))
                # (the run time for the lookahead's mean and the log line, read once; _observe's
                # update, without its call)
                ran = time.perf_counter() - started
                mean = self._mean_run
                self._mean_run = ran if mean == math.inf else 0.8 * mean + 0.2 * ran
        except LeftInProgress:
            self._left_in_progress(job)
            return
        except asyncio.CancelledError as exc:
            await self._interrupted(job, jt, exc, started_ms)
            return
        except Suspend as exc:  # an iterable job stopped at a checkpoint (longwork/iterable.py)
            await self._suspended(job, exc)
            return
        except RetryLater as exc:
            await self._snoozed(job, jt, exc, started_ms, started)
            return
        except Exception as exc:
            if isinstance(exc, TimeoutError) and scope is not None and scope.expired():
                exc = TimeoutError(f"timed out after {limit:g}s")
            await self._failed(job, jt, exc, started_ms, started)
            return
        finally:
            # (this run's entry in running went as its handler ended: one there now is a later
            # run's of the same job, fetched again while this one settled, and so is a cancel
            # request for the job: both left to that run)
            if self._cancel_requests and job.id not in self.running:
                self._cancel_requests.pop(job.id, None)  # a request that came too late
        self.processed += 1
        self.counters.ended("done", self._now())
        self._ack(job, jt, encoded, started_ms, ran * 1000)
        # nothing of this job awaits any more (its ack is queued): its slot goes to the next
        # job now, in this turn of the loop, not a turn later in the task's done callback
        # (its task as _spawn noted it, the one running this job; else, under an eager task
        # factory, asyncio.current_task(): Python-level on 3.11, ~400 CPU instructions)
        task = held[1] if held is not None and held[0] is job else asyncio.current_task()
        if task is not None and task in self.tasks:
            self._free_slot(task)
            # and its done callback has nothing left to do (_task_done): taken off, so that
            # the task's end schedules no callback (a turn of the event loop less a job)
            self._holding.pop(task, None)
            task.remove_done_callback(self._done_callback)

    def _ack(self, job: Job, jt: JobType, encoded: bytes, started_ms: int, ran_ms: float) -> None:
        if self.abandoned:
            log.warning(
                "%s %s finished, but this pool lost its lease: not acknowledged (the job was "
                "given to another pool)",
                job.name,
                job.id,
                extra=job_extra(job),
            )
            return
        # (every field given in order: no keyword or attribute set after; the attempt is
        # job.history_attempt's, without its property's call)
        attempt = job.previous_attempts + job.fails + 1
        acked = Acked(job.id, job.name, encoded, started_ms, jt.result_ttl_ms, attempt,
                      job._attempt, b"", b"", job, ran_ms)  # fmt: skip
        if self.json_records:
            acked.envelope_json = self.settler.envelope_json(job._raw)
        if self.settler.history and job._raw is not None and len(job._raw) > HISTORY_ARGS_MAX:
            acked.history_json = history_json(job)  # (else b"", the default)
        self.acker.add(acked, jt.max_concurrency != 0)  # (bool()'s answer, without its call)

    async def close(self, timeout: float = 10.0) -> None:
        """Flush remaining acks and activity counts, stop the ack flusher, free connections
        (the held ones even when this fails or is cancelled)."""
        try:
            await self.acker.close(timeout)
            await self.counters.close(self.scripts.redis, self.keys, timeout)
        finally:
            await self.scripts.aclose()
