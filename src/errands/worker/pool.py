"""WorkerPool: register job handlers and middleware, then run them.

>>> pool = WorkerPool.from_url("redis://localhost:6379/0", namespace="myapp", concurrency=32)
>>> @pool.job("send_email", max_fails=4, timeout=30)
... async def send_email(job: Job) -> None: ...
>>> pool.run()        # or: async with pool: ...
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from ..aio import DaemonThreadPool, cancel_and_wait
from ..clock import Clock, SystemClock
from ..errors import RegistrationError
from ..handlers import JobType
from ..middleware import ProcessMiddleware
from ..periodic.enqueuer import PeriodicEnqueuer
from ..periodic.registration import PeriodicRegistration
from ..serialization import JSONSerializer, Serializer
from ..store.connection import connect, describe, redact_url
from ..store.foreign import watch_client
from ..store.hotcalls import WorkerScripts
from ..store.keys import Keys
from ..store.redisclock import RedisAlignedClock
from ..store.topology import RedisClient, as_redis
from .controls import PoolControls
from .heartbeat import Heartbeater
from .lease import Lease, LeaseKeeper
from .leasing import LeaseRecovery
from .loop import Worker
from .notifier import Notifier
from .options import check_pool_options
from .outcomes import ended_jobs
from .reaper import Reaper
from .registry import Hook, JobRegistry, call_hooks, seconds
from .requeuer import Requeuer
from .runner import run_pool
from .settler import Settler
from .shutdown import abandon, finish_running, keep_beating, leave_in_progress, wait_for_threads
from .starting import Starting

if TYPE_CHECKING:
    from ..enqueuer import Enqueuer

__all__ = ["WorkerPool"]

log = logging.getLogger("errands.pool")


class WorkerPool(JobRegistry, PeriodicRegistration, LeaseRecovery, PoolControls, Starting):
    """Runs registered jobs with up to ``concurrency`` at a time in this process. Timings (s):
    ``shutdown_grace`` lets running jobs finish on stop; ``dead_timeout`` is how long without
    a heartbeat before a pool counts as dead and its jobs run elsewhere; ``poll_interval``
    bounds how late a scheduled or retried job is promoted.
    """

    def __init__(
        self,
        redis: RedisClient | None = None,
        *,
        namespace: str = "errands",
        concurrency: int = 10,
        url: str | None = None,
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        shutdown_grace: float | timedelta = 30.0,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 2.0,
        dead_timeout: float = 10.0,
        max_recoveries: int = 3,
        dead_max_jobs: int = 10_000,
        dead_max_age: float | timedelta = timedelta(days=180),
        schedules: Mapping[str, str] | None = None,
        schedule_refresh: float = 2.0,
        history: bool = True,
        history_retention: float | timedelta = timedelta(days=15),
        history_max: int = 100_000,
        redis_functions: bool = True,
    ) -> None:
        if redis is None and url is None:
            raise RegistrationError("WorkerPool needs a Redis client or url=")
        check_pool_options(
            concurrency=concurrency, shutdown_grace=shutdown_grace, poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval, dead_timeout=dead_timeout,
            max_recoveries=max_recoveries, dead_max_jobs=dead_max_jobs, dead_max_age=dead_max_age,
            schedule_refresh=schedule_refresh, history=history,
            history_retention=history_retention, history_max=history_max,
            redis_functions=redis_functions,
        )  # fmt: skip
        self.url = url
        self._redis = watch_client(as_redis(redis)) if redis is not None else None  # (forks)
        self.namespace = namespace
        Keys(namespace)  # validates
        self.concurrency = concurrency
        self.clock: Clock = clock or SystemClock()
        self.serializer: Serializer = serializer or JSONSerializer()
        self.shutdown_grace = seconds(shutdown_grace)
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.dead_timeout = dead_timeout
        self.max_recoveries = max_recoveries
        self.dead_max_jobs = dead_max_jobs
        self.dead_max_age = seconds(dead_max_age)
        self._init_periodic(schedules)  # named schedules: cron.NAME -> spec
        self.schedule_refresh = schedule_refresh  # seconds between reads of runtime schedules
        self.periodic: PeriodicEnqueuer | None = None
        self.history = history
        self.history_retention = seconds(history_retention)
        self.history_max = history_max
        self.redis_functions = redis_functions  # False: FUNCTION LOAD, FCALL never sent
        self._owns_client = redis is None
        self._init_state()

    def _init_state(self) -> None:
        """(__init__) What is registered, and the components a start builds (none yet)."""
        self.context: dict[str, Any] = {}
        self.job_types: dict[str, JobType] = {}
        self._middleware: list[ProcessMiddleware] = []
        self._on_startup: list[Hook] = []
        self._on_shutdown: list[Hook] = []
        self.id = uuid.uuid4().hex[:16]
        self._started = self._stop_begun = self._rebirth_over = False  # (leasing.py)
        self._grace_over = asyncio.Event()
        self._remote_tasks: set[asyncio.Task[None]] = set()  # quiet()/resume() asked remotely
        self.left_in_progress: list[str] = []  # job ids a stop(exiting=True) left in threads
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Task[Any] | None = None
        self._start_over = asyncio.Event()
        self._stopping: tuple[asyncio.Task[Any] | None, asyncio.Event] | None = None
        self.worker: Worker | None = None
        self.requeuer: Requeuer | None = None
        self.reaper: Reaper | None = None
        self.heartbeater: Heartbeater | None = None
        self.lease: Lease | None = None
        self.lease_keeper: LeaseKeeper | None = None
        self._rebirth_task: asyncio.Task[None] | None = None
        self.lease_losses = 0  # how often this pool lost its lease and carried on anew
        self._wake = asyncio.Event()
        self._executor: DaemonThreadPool | None = None
        self.bound_enqueuer: Enqueuer | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> WorkerPool:
        return cls(url=url, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True from ``start()`` until ``stop()``."""
        return self._started

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            assert self.url is not None
            self._redis = connect(self.url)
        return self._redis

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def _where(self) -> str:
        return redact_url(self.url) if self.url else describe(self.redis)

    async def start(self) -> None:
        """Connect, run startup hooks, start heartbeats, fetching, promotion, reaping (undone
        when cancelled or failing: see ``Starting._start_up``)."""
        if self._stopping is not None:  # (it would return, `started`, the pool about to stop)
            raise RuntimeError(
                f"pool {self.id}: start() during a stop() under way: call it again once the "
                "stop returned"
            )
        if self._start_under_way():
            if self._starting is not asyncio.current_task():  # (one from a startup hook returns)
                await self._join_start()
            return
        if self._started:
            return
        if not self.job_types:
            raise RegistrationError("no job types registered: use @pool.job(...) first")
        self._grace_over = asyncio.Event()  # (before any await: an end_grace() meanwhile counts)
        # in the caller's task (its context: what startup hooks set is seen after), which a
        # stop() meanwhile cancels: start() then raises CancelledError, the start given up
        # (Starting._cancel_start)
        self._starting = asyncio.current_task()
        self._start_over = over = asyncio.Event()
        try:
            scripts, names = await self._start_up()  # (starting.py)
            self._wake = asyncio.Event()  # (no await from here on: a cancel cannot come between)
            self._build(scripts, names, self._wake)
            self._launch(self._wake)
            self._after_launch(names)  # (controls.py) logs the start, applies a remote request
        finally:
            self._starting = None
            over.set()

    def _build(self, scripts: WorkerScripts, names: list[str], wake: asyncio.Event) -> None:
        """Construct the components: worker (with settler), requeuer, reaper, periodic."""
        assert self.lease is not None and self.heartbeater is not None
        self.worker = self._build_worker(scripts, wake)
        self.requeuer = Requeuer(
            scripts,
            names,
            self.clock,
            self.poll_interval,
            history_retention=self.history_retention,
            history_max=self.history_max,
            ended_max_age=self.dead_max_age,
            ended_max_jobs=self.dead_max_jobs,
        )
        self.reaper = Reaper(
            scripts,
            self.clock,
            self.id,
            self.lease,
            self.dead_timeout,
            max(0.1, min(self.heartbeat_interval, self.dead_timeout / 8)),
            self.max_recoveries,
            self.history,
        )
        self.periodic = PeriodicEnqueuer(
            self.redis,
            self.keys,
            RedisAlignedClock(self.clock, scripts),  # fire times by the Redis clock
            self.serializer,
            self._periodic,
            pool_id=self.id,
            refresh_interval=self.schedule_refresh,
        )
        self.lease_keeper = LeaseKeeper(
            scripts, self.id, self.lease, self.heartbeater.payload, self.heartbeater.info_ttl_ms
        )

    def _build_worker(self, scripts: WorkerScripts, wake: asyncio.Event) -> Worker:
        """(_build) The worker, with its settler (and the thread pool of plain-def handlers)."""
        if any(not jt.is_async for jt in self.job_types.values()):
            self._executor = DaemonThreadPool(self.concurrency, thread_name_prefix="errands-job")
        settler = Settler(
            scripts,
            self.id,
            self.clock,
            self.serializer,
            dead_max_jobs=self.dead_max_jobs,
            dead_max_age=self.dead_max_age,
            history=self.history,
            job_types=self.job_types,
        )
        return Worker(
            pool_id=self.id,
            scripts=scripts,
            settler=settler,
            serializer=self.serializer,
            clock=self.clock,
            job_types=self.job_types,
            middleware=self._middleware,
            concurrency=self.concurrency,
            context=self.context,
            executor=self._executor,
            wake=wake,
            poll_interval=self.poll_interval,
            history=self.history,
            # a job's last chance after crashes runs apart from other crash suspects
            isolate_recovered=max(1, self.max_recoveries - 1),
            lease=self.lease,
        )

    def _launch(self, wake: asyncio.Event) -> None:
        """Start the wake-up subscription and the components' loops as tasks."""
        channels = [self.keys.wake_channel, self.keys.pool_wake_channel(self.id)]
        notifier = Notifier(self.redis, channels, wake, self.keys.control_channel, self._on_control)
        notifier.on_lost = self.worker.drop_held if self.worker else None
        notifier.on_wake = self.worker.batch_woken if self.worker else None
        self._notifier_task = asyncio.create_task(notifier.run(), name="errands-notifier")
        self._launch_components()

    def _launch_components(self) -> None:
        assert self.worker and self.requeuer and self.reaper and self.periodic and self.lease_keeper
        self._tasks = [
            asyncio.create_task(self.lease_keeper.run(), name="errands-lease"),
            asyncio.create_task(self.requeuer.run(), name="errands-requeuer"),
            asyncio.create_task(self.reaper.run(), name="errands-reaper"),
            asyncio.create_task(self.worker.sweep_cancel_requests(), name="errands-cancels"),
        ]
        self._tasks.append(asyncio.create_task(self.periodic.run(), name="errands-periodic"))
        self._tasks.append(asyncio.create_task(self._served.run(), name="errands-served"))
        self._fetch_task = asyncio.create_task(self.worker.run(), name="errands-fetcher")

    async def stop(self, grace: float | None = None, *, exiting: bool = False) -> None:
        """Stop fetching; let running jobs finish within ``grace`` seconds (default
        ``shutdown_grace``); cancel the async ones still running and put them back on their
        queues. A plain-def handler cannot be interrupted: ``stop()`` waits for it (heartbeating,
        so no other pool runs its job meanwhile). ``exiting=True`` is for a process that exits
        right after (``pool.run()`` and the CLI): such jobs are then left in progress and run
        again by other pools once the process is gone. See docs/workers.md#graceful-shutdown."""
        await self._cancel_start()  # (starting.py) a start under way is given up
        if self._stopping is not None:  # a stop under way: waited for (one from its own
            if self._stopping[0] is not asyncio.current_task():  # shutdown hook returns)
                await self._stopping[1].wait()
            return
        if not self._started or not self._launched:  # (self.worker may be a previous run's)
            return
        self._stopping = stopping = (asyncio.current_task(), asyncio.Event())
        try:
            await self._stop_launched(grace, exiting)
        finally:
            self._stopping = None
            stopping[1].set()

    async def _stop_launched(self, grace: float | None, exiting: bool) -> None:
        assert self.worker is not None  # (launched)
        grace = self.shutdown_grace if grace is None else grace
        self._stop_begun = True
        if self._rebirth_task is not None:
            await cancel_and_wait([self._rebirth_task])
        worker = self.worker
        worker.stop_fetching()
        await asyncio.gather(self._fetch_task, return_exceptions=True)
        report = await finish_running(worker, self.id, grace, self._grace_over)
        left = report.in_threads if exiting else []
        self.left_in_progress = [job.id for job in left]
        if left:
            leave_in_progress(worker, self.id, left, self.dead_timeout)
        elif report.in_threads:
            try:
                await wait_for_threads(worker, self.id, report.in_threads)
            except asyncio.CancelledError:
                tasks = [*self._tasks, self._notifier_task, *self._remote_tasks]
                abandon(self.id, worker, report.in_threads, tasks)
                keep_beating(self.id, self.heartbeater, self._executor)
                self._started = False
                raise
        await worker.close()
        tasks = [*self._tasks, self._notifier_task, *self._remote_tasks, *self._no_more_rebirth()]
        for task in await cancel_and_wait(tasks):
            log.error("pool %s: %s ignores cancellation", self.id, task.get_name())
        try:
            hook_error = await call_hooks(
                self._on_shutdown, self.context, f"pool {self.id}: shutdown"
            )
        finally:  # (a cancel in a shutdown hook too: nothing stays registered, beating)
            await self._end_run(withdraw=True, lingering=bool(left))  # (starting.py)
        log.info("pool %s stopped after %s", self.id, ended_jobs(worker))
        if hook_error is not None:
            raise hook_error

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drain(self, timeout: float | None = None) -> None:
        """Run until this pool's queues are empty and no job runs, for tests and --burst (due
        scheduled and retry jobs are promoted first; later ones and paused names are not)."""
        was_started = self._started or self._start_under_way()  # (joined: the other's pool)
        await self.start()
        assert self.worker is not None and self.requeuer is not None
        try:
            async with asyncio.timeout(timeout) as deadline:
                while True:  # (expiry checked too: a cancel some call swallowed ran on)
                    if deadline.expired():
                        raise TimeoutError(f"drain: not drained within {timeout}s")
                    await self.requeuer.promote_once()
                    self.worker.wake.set()
                    settled = self.worker.settled  # before the queues: an ack may queue jobs
                    names = list(self.job_types)
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.smembers(self.keys.paused)
                        pipe.zcard(self.keys.in_progress(self.worker.pool_id))  # a fetch in flight
                        for name in names:
                            pipe.zcard(self.keys.queue(name))
                        paused, taken, *sizes = await pipe.execute()
                    paused_names = {p.decode() for p in paused}
                    waiting = taken or any(
                        n for name, n in zip(names, sizes, strict=True) if name not in paused_names
                    )
                    if not waiting and settled:
                        await asyncio.sleep(0.01)
                        # a job may have settled into its retry set, due now, since the promote
                        if self.worker.settled and (await self.requeuer.promote_once())[0] == 0:
                            return
                    await asyncio.sleep(0.005)
        finally:
            if not was_started:
                await self.stop()

    def run(self) -> None:
        """Run until SIGINT/SIGTERM (blocking); uses uvloop when it is installed."""
        run_pool(self)
