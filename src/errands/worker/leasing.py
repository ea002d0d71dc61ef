"""A pool's lease over its life (see ``lease.py``): taken when it starts (no lease, no start),
given up when it stops holding no job, and lost when a reaper took it, and gave its jobs to
other pools, while this pool was cut off from Redis, frozen (SIGSTOP, a VM pause) or stalled by
a handler holding the GIL.

The pool abandons the jobs it holds at once: it stops fetching, cancels its async handlers (a
plain def handler cannot be interrupted: its thread runs on, its outcome is dropped), writes no
ack, settle or check-in for them (the scripts would refuse them anyway), logs what happened,
and carries on under a new pool id, registered afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

from ..aio import cancel_and_wait
from ..errors import RedisUnavailableError
from ..outagelog import OutageLog
from ..store.hotcalls import WorkerScripts
from ..store.keyrepair import repair_hint
from ..store.scripts import Scripts
from .heartbeat import Heartbeater
from .lease import Lease

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from redis.asyncio import Redis

    from ..handlers import JobType
    from ..store.keys import Keys
    from .loop import Worker

__all__ = ["LeaseRecovery"]

log = logging.getLogger("errands.pool")


class LeaseRecovery:
    """Mixin of WorkerPool."""

    id: str
    job_types: dict[str, JobType]
    worker: Worker | None
    heartbeater: Heartbeater | None
    lease: Lease | None
    concurrency: int
    heartbeat_interval: float
    redis_functions: bool
    dead_timeout: float
    _started: bool
    _tasks: list[asyncio.Task[None]]
    _fetch_task: asyncio.Task[None]
    _notifier_task: asyncio.Task[None]
    _wake: asyncio.Event
    _rebirth_task: asyncio.Task[None] | None
    _stop_begun: bool  # a stop() began: a lost lease is not followed by a new one
    _rebirth_over: bool  # the stop cancelled the pool's tasks for the last time: no rebirth
    _launched: bool = False  # the start built and launched the components (controls.py)
    _lost_at_start: str | None = None  # the lease lost before that: the start fails
    _request_at_start: str | None  # (controls.py) a remote request before the launch
    lease_losses: int

    if TYPE_CHECKING:  # provided by WorkerPool (and its PoolControls mixin)

        @property
        def keys(self) -> Keys: ...

        @property
        def redis(self) -> Redis: ...

        def _where(self) -> str: ...

        def _build(self, scripts: WorkerScripts, names: list[str], wake: asyncio.Event) -> None: ...

        def _launch(self, wake: asyncio.Event) -> None: ...

        async def _carry_quiet(self, since: float | None) -> None: ...

        def _remote_request(self, request: str) -> None: ...

        async def _bounded(self, call: Awaitable[None], bound: float | None, what: str) -> None: ...

        def _giving_up(self) -> None: ...

    def _info(self, names: list[str]) -> dict[str, object]:
        """The pool's registration (its heartbeat's info: what admin and the dashboard show)."""
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": time.time(),
            "concurrency": self.concurrency,
            "job_names": names,
        }

    async def _register(self, names: list[str]) -> None:
        """Take a lease: the first heartbeat registers the pool; RedisUnavailableError if it
        fails (a pool that cannot prove it is alive must not run jobs)."""
        self.lease = lease = Lease(self.heartbeat_interval, self.dead_timeout)
        loop = asyncio.get_running_loop()

        def lost(reason: str) -> None:
            loop.call_soon_threadsafe(self._lease_lost_of, lease, reason)

        def requested(request: str) -> None:
            with contextlib.suppress(RuntimeError):  # (the loop closed: the pool is gone)
                loop.call_soon_threadsafe(self._remote_request, request)

        lease.on_lost = lost
        lease.on_request = requested
        self.heartbeater = heartbeater = Heartbeater(
            self.redis, self.keys, self.id, self._info(names), lease
        )
        first = asyncio.ensure_future(asyncio.to_thread(heartbeater.start))
        try:
            await asyncio.shield(first)
        except asyncio.CancelledError:  # (a signal during the start) the thread runs on
            await self._unregister(first)
            raise
        except Exception as exc:
            self._giving_up()  # (a start's: a stop() meanwhile waits, starting.py)
            await asyncio.to_thread(self.heartbeater.stop)
            raise RedisUnavailableError(
                f"pool {self.id} could not register at {self._where()} (first heartbeat "
                f"failed): {exc}"
            ) from exc

    async def _unregister(self, first: asyncio.Future[None]) -> None:
        """(_register cancelled) Wait for the first beat's thread (bounded by the heartbeat
        client's timeouts), then take away the registration it may have written, given up
        after max(1 s, heartbeat_interval) as a start given up later does (starting.py): it
        holds no job, its registration lapses within dead_timeout. A stop() meanwhile waits
        for it (cancelled, it would skip both: the pool left beating, registered)."""
        self._giving_up()  # (a start's give-up, whoever cancelled it: starting.py)
        registered = True
        try:
            await first
        except Exception:
            registered = False
        if self.heartbeater is not None:
            await asyncio.to_thread(self.heartbeater.stop)
        if registered:
            await self._bounded(self._deregister(), max(1.0, self.heartbeat_interval), "deregister")

    async def _deregister(self) -> None:
        """Give up this pool's lease if it holds no jobs (else the reaper takes them)."""
        try:
            await Scripts(self.redis, self.keys).deregister(self.id, sorted(self.job_types))
        except Exception as exc:  # (a refusal naming a key: its type and repair, one line)
            hint = await repair_hint(self.redis, self.keys, exc)
            log.warning("could not deregister pool %s: %s%s", self.id, exc, hint)

    def _begin_run(self) -> None:
        """(start, once registered) Started, not yet launched: until then a lost lease makes
        the start fail (``_check_lease``) and a remote request waits (controls.py)."""
        self._started, self._stop_begun, self._rebirth_over = True, False, False
        self._launched, self._lost_at_start, self._request_at_start = False, None, None

    def _check_lease(self) -> None:
        """(start, after its startup hooks, right before the launch) RedisUnavailableError if
        the lease was lost meanwhile: the start fails and gives the lease up (no rebirth: it
        would outlive a start given up, and there is nothing yet to carry on)."""
        if self._lost_at_start is not None:
            raise RedisUnavailableError(
                f"pool {self.id} lost its lease while starting (startup hooks): "
                f"{self._lost_at_start}; the start is given up"
            )

    def _lease_lost_of(self, lease: Lease, reason: str) -> None:
        """(on the loop) Only the loss of the pool's lease counts, not that of a previous
        run's (or id's): its renewal refused in a call made through its old lease keeper."""
        if lease is self.lease:
            self._lease_lost(reason)

    def _lease_lost(self, reason: str) -> None:
        """Called on the event loop (from any thread, via call_soon_threadsafe), once per id."""
        if not self._started or (self._rebirth_task is not None and not self._rebirth_task.done()):
            return
        if not self._launched:  # (the startup hooks run) the start fails: _check_lease
            log.warning("pool %s lost its lease while starting: %s", self.id, reason)
            self._lost_at_start = reason
            return
        if self._rebirth_over:  # (a task started now would outlive the stop)
            log.warning(
                "pool %s lost its lease at the end of its stop: %s. What it still holds goes "
                "to other pools (a reaper gives it back)",
                self.id,
                reason,
            )
            return
        self._rebirth_task = asyncio.create_task(self._rebirth(reason), name="errands-rebirth")

    def _no_more_rebirth(self) -> list[asyncio.Task[None]]:
        """(stop, before its last cancel of the pool's tasks) No rebirth starts from now on;
        returns the one that may run, to cancel with the others."""
        self._rebirth_over = True
        return [self._rebirth_task] if self._rebirth_task is not None else []

    async def _rebirth(self, reason: str) -> None:
        old_id, worker = self.id, self.worker
        # given up in time (not taken): the acks of jobs that finished here are still written
        # if they get through before a reaper takes the lease (the fence decides)
        given_up = self.lease is not None and not self.lease.taken
        running, buffered, acks = worker.abandon(given_up) if worker is not None else (0, 0, 0)
        # the abandoned jobs are cancelled again and again from now on, not only after the
        # deregister below (up to 1 s when Redis does not answer): a cancellation can be
        # swallowed (Python 3.11's wait_for in redis-py, or a handler that suppresses what a
        # call raised for it), and the job ran on meanwhile while another pool ran it too
        stopping = asyncio.ensure_future(
            cancel_and_wait(list(worker.tasks) if worker is not None else [], timeout=1.0)
        )
        # its idle marks first (deregister.lua: only them while it holds jobs), so that no
        # enqueue hands a job to the old id (lua/lib/handoff.lua: it would wait for a reaper)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, self.heartbeat_interval)):
                await self._deregister()
        self.lease_losses += 1
        log.error(
            "pool %s lost its lease: %s. Its jobs go to other pools: %d running job(s) "
            "cancelled, %d fetched ahead and %d finished but unacknowledged dropped; nothing of "
            "them is settled or checked in here%s. Carrying on under a new id.",
            old_id,
            reason,
            running,
            buffered,
            acks,
            ", and the jobs that finished here are acknowledged if Redis answers before a "
            "reaper takes the lease"
            if given_up
            else " nor acknowledged",
        )
        await cancel_and_wait([self._fetch_task, *self._tasks])
        stuck = await stopping  # (a thread cannot be cancelled)
        if worker is not None:
            # (and any job that started meanwhile: none should, the worker abandoned)
            stuck = await cancel_and_wait([*stuck, *worker.tasks], timeout=1.0)
            if stuck:
                log.warning(
                    "pool %s: %d abandoned job(s) still run in threads; their outcome is dropped",
                    old_id,
                    len(stuck),
                )
            await worker.close(max(30.0, 3 * self.dead_timeout) if given_up else 1.0)
        # given up: holding no job any more, the old id leaves the registry at once; taken:
        # only its idle marks go (a wake-up sent to the old id would be lost)
        await self._deregister()
        if self.heartbeater is not None:
            await asyncio.to_thread(self.heartbeater.stop)
        if self._stop_begun:  # the stop ends the pool: no new id takes jobs after it
            log.warning("pool %s: not registering anew, the pool stops", old_id)
            return
        names = sorted(self.job_types)
        await self._register_anew(old_id, names)
        self._build(WorkerScripts(self.redis, self.keys, self.redis_functions), names, self._wake)
        # quiet (or quieted meanwhile, through the old worker): the new one is too
        await self._carry_quiet(worker.quiet_since if worker is not None else None)
        await cancel_and_wait([self._notifier_task])  # it listens on the new id's channel
        self._launch(self._wake)
        log.warning("pool %s is now pool %s (registered anew: Redis answers)", old_id, self.id)

    async def _register_anew(self, old_id: str, names: list[str]) -> None:
        """(_rebirth) Register under a new id, retried until Redis takes it."""
        delay = 0.25
        outage = OutageLog(log, f"pool {old_id} registering anew")
        while True:
            self.id = uuid.uuid4().hex[:16]
            try:
                await self._register(names)
                outage.ok()
                return
            except RedisUnavailableError as exc:
                outage.failed(exc)
                await asyncio.sleep(delay)
                # retried often enough to run again soon after a long outage of Redis
                delay = min(delay * 2, max(0.25, self.heartbeat_interval))
