"""The part of a pool's start before its components are built: check Redis (and warn of an
evicting maxmemory-policy: store/serverinfo.py), take the lease (register), run the startup
hooks, write the caps and publish the names served; undone when the start fails or is
cancelled (a signal to a worker process that is still starting)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..store.connection import check
from ..store.hotcalls import WorkerScripts
from ..store.served import ServedNames
from ..store.serverinfo import warn_if_evicting
from .limitwatch import write_caps
from .registry import Hook, call_hook, call_hooks
from .shutdown import keep_beating

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..aio import DaemonThreadPool
    from ..handlers import JobType
    from ..store.keys import Keys
    from .heartbeat import Heartbeater

__all__ = ["Starting"]

log = logging.getLogger("errands.pool")


class Starting:
    """Mixin of WorkerPool."""

    id: str
    url: str | None
    job_types: dict[str, JobType]
    context: dict[str, Any]
    dead_timeout: float
    heartbeat_interval: float
    redis_functions: bool
    _started: bool
    _on_startup: list[Hook]
    _on_shutdown: list[Hook]
    _owns_client: bool  # (made from the URL: closed by a stop, or by a start given up)
    _redis: Redis | None
    _served: ServedNames
    _starting: asyncio.Task[Any] | None  # (start) the task running it, which a stop() cancels
    _start_over: asyncio.Event  # (start) set once it launched or gave up
    _start_giving_up: asyncio.Event | None = None  # (_giving_up) the _start_over of the
    # start whose give-up runs (a failed or cancelled start undoing itself): a stop() from its
    # shutdown hooks returns at once, another waits for it (not cancelling it: the step it
    # came in would be skipped, a hook interrupted, the pool left registered, beating)
    _launched: bool  # (leasing.py)
    heartbeater: Heartbeater | None
    _executor: DaemonThreadPool | None

    if TYPE_CHECKING:  # provided by WorkerPool (and its LeaseRecovery mixin)

        @property
        def keys(self) -> Keys: ...

        @property
        def redis(self) -> Redis: ...

        async def _register(self, names: list[str]) -> None: ...

        def _begin_run(self) -> None: ...

        def _check_lease(self) -> None: ...

        async def _deregister(self) -> None: ...

    async def _start_up(self) -> tuple[WorkerScripts, list[str]]:
        """(start) Up to the launch: the scripts and the job names served. Given up (it
        fails, or is cancelled), the start leaves nothing behind: the client the pool made is
        closed, and the shutdown hooks run if every startup hook returned."""
        try:
            await check(self.redis, self.url)
            # a new identity for every run: a restarted pool never mistakes the jobs a previous
            # run left in progress (a reaper gives those back) for orphans of its own
            self.id = uuid.uuid4().hex[:16]
            await warn_if_evicting(self.redis, self.keys.jobs, self.id)  # (one INFO memory)
            names = sorted(self.job_types)
            await self._register(names)  # no lease, no start
        except BaseException:  # (Redis does not answer, or the start was cancelled: a signal)
            self._giving_up()
            await self._close_client()
            raise
        self._begin_run()  # (leasing.py) started, not launched: a lost lease fails the start
        self._served = ServedNames(self.redis, self.keys, lambda: self.id, names, self.dead_timeout)
        hooks_ran = published = False  # (what the start's undoing undoes)
        try:
            for hook in self._on_startup:
                await call_hook(hook, self.context)
            hooks_ran = True
            scripts = WorkerScripts(self.redis, self.keys, self.redis_functions)
            await write_caps(self.redis, self.keys, self.job_types, names)
            published = True
            await self._served.publish()
            self._check_lease()  # lost during the hooks: the start fails (no rebirth)
        except BaseException:  # (a hook failed, or the start was cancelled: a signal)
            self._started = False  # nothing runs yet: a later start() must really start
            await self._give_up_start(hooks_ran, published)
            raise
        return scripts, names

    async def _give_up_start(self, hooks_ran: bool, published: bool) -> None:
        """(_start_up failed or cancelled once registered) The shutdown hooks pair with startup
        hooks that all returned (what they opened is closed; one that raises is logged, the
        start's own error is what start() raises); then as at the end of a stop, even when a
        second cancel interrupts a shutdown hook."""
        self._giving_up()
        try:
            if hooks_ran:
                await call_hooks(self._on_shutdown, self.context, f"pool {self.id}: shutdown")
        finally:  # (Redis black-holed: each call bounded, else 15 s timeouts and their retries)
            await self._end_run(withdraw=published, bound=max(1.0, self.heartbeat_interval))

    async def _end_run(
        self, *, withdraw: bool, lingering: bool = False, bound: float | None = None
    ) -> None:
        """(the end of a stop, a start given up) Stop heartbeating (``lingering``: from a
        thread once the plain-def handlers still running return), withdraw the names served,
        give up the lease (not while lingering: the reaper takes their jobs), shut the
        thread pool of plain-def handlers down, close the client. Each step is taken even
        when one before it fails or is cancelled (a second cancel skips at most the step it
        comes in): no registration or heartbeat is left. ``bound`` (a start given up: it holds
        no job) bounds each call to Redis: one that times out leaves the registration to lapse
        (a reaper takes it after ``dead_timeout``), the names to their TTL."""
        async with contextlib.AsyncExitStack() as steps:  # (run last pushed first)
            steps.callback(setattr, self, "_started", False)
            steps.push_async_callback(self._close_client)
            steps.callback(self._shut_executor)
            if not lingering:
                steps.push_async_callback(
                    lambda: self._bounded(self._deregister(), bound, "deregister")
                )
            if withdraw:
                steps.push_async_callback(
                    lambda: self._bounded(self._served.withdraw(), bound, "withdraw its names")
                )
            if lingering:
                keep_beating(self.id, self.heartbeater, self._executor)
            elif self.heartbeater is not None:
                await asyncio.to_thread(self.heartbeater.stop)

    def _shut_executor(self) -> None:
        """(_end_run) The thread pool of plain-def handlers shut (given up: a previous run's)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _bounded(self, call: Awaitable[None], bound: float | None, what: str) -> None:
        """(_end_run) ``call``, given up after ``bound`` seconds (None: not bounded)."""
        if bound is None:
            await call
            return
        try:
            async with asyncio.timeout(bound):
                await call
        except TimeoutError:
            log.warning(
                "pool %s: could not %s, Redis did not answer within %.1fs; its registration "
                "lapses within dead_timeout (%.1fs)",
                self.id,
                what,
                bound,
                self.dead_timeout,
            )

    def _start_under_way(self) -> bool:
        """A start() (another caller's, or a startup hook's own) has begun and not ended."""
        return self._starting is not None and not self._start_over.is_set()

    def _giving_up(self) -> None:
        """(a start under way that failed or was cancelled, before the first await of its
        undoing: the client's close, ``_unregister``, ``_give_up_start``) From now on until
        it ends a stop() waits for the give-up instead of cancelling its task again."""
        if self._start_under_way():  # (not a rebirth registering anew: no start then)
            self._start_giving_up = self._start_over

    async def _cancel_start(self) -> None:
        """(stop) A start under way is given up as a signal gives it up: the task running it is
        cancelled (a startup hook too; start() raises CancelledError there; one from a
        shutdown hook of the start's give-up returns at once), it takes its own
        give-up path (the shutdown hooks run only if every startup
        hook returned) and launches nothing; waited for (a cancel of the stop leaves it to
        end). A start that ignored its cancellation (a hook swallowing it) launched: the stop
        then stops the pool as usual. Each stop() cancels it (a startup hook that swallowed
        one cancel and awaits on gets the next), but not once its give-up began (``_giving_up``:
        a stop()'s, its caller's cancel, a failure): a stop() then only waits (a cancel would
        skip the give-up's step it comes in: a shutdown hook, the heartbeat's stop, the
        deregister)."""
        starting, over = self._starting, self._start_over
        if starting is None or over.is_set():
            return
        if starting is asyncio.current_task():
            if self._start_giving_up is over:  # from a shutdown hook of its give-up: returns
                return  # (not started: stop() returns at once)
            raise asyncio.CancelledError("pool.stop() during the start")  # (a startup hook)
        if self._start_giving_up is not over:
            starting.cancel()  # (the task that runs start(): its caller's)
        await over.wait()  # (a start that ignored the cancel launched: the stop goes on)

    async def _join_start(self) -> None:
        """(a second start() during a start under way) Wait for that start: it launched the
        pool, or it failed or was given up (a stop() meanwhile): RuntimeError then (a start of
        its own would outlive that stop, or repeat a failing start the caller did not ask to)."""
        await self._start_over.wait()
        if not (self._started and self._launched):
            raise RuntimeError(
                f"pool {self.id}: the start() under way (another call, which this one waited "
                "for) failed or was given up; the pool is not started"
            )

    async def _close_client(self) -> None:
        """(stop, a start given up) Close the client the pool made from its URL (a later
        start makes another); one passed in is the caller's, left open."""
        if self._owns_client and self._redis is not None:
            await self._redis.aclose()
            self._redis = None
