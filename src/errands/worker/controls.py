"""A running pool's controls beside ``stop()``: quiet and resume (what SIGTSTP does to
``errands worker``, as Sidekiq's TSTP), and the end of a stop's grace (a second SIGTERM).

A quiet pool finishes the jobs it runs and takes no new one (worker/quieting.py), while it keeps
heartbeating (its jobs are not reaped), promoting scheduled jobs, reaping dead pools and firing
its schedules. It publishes ``quiet_since`` with its heartbeat info (``Client.worker_pools()``,
the dashboard's pools page). A deploy quiets the old pools, waits for their running jobs, then
stops them (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .heartbeat import Heartbeater
    from .lease import LeaseKeeper
    from .loop import Worker

__all__ = ["PoolControls"]

log = logging.getLogger("errands.pool")


class PoolControls:
    """Mixin of WorkerPool."""

    id: str
    namespace: str
    concurrency: int
    worker: Worker | None
    heartbeater: Heartbeater | None
    lease_keeper: LeaseKeeper | None
    _started: bool
    _launched: bool  # (leasing.py) the start launched the components: a request applies now
    _request_at_start: str | None = None  # a remote request before that, applied then
    _rebirth_over: bool  # (leasing.py) the stop cancelled the pool's tasks for the last time
    _grace_over: asyncio.Event
    _remote_tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:  # provided by WorkerPool

        def _where(self) -> str: ...

    @property
    def quiet_since(self) -> float | None:
        """When (Unix time) the running pool went quiet; None while it takes jobs."""
        worker = self.worker
        return worker.quiet_since if self._running and worker is not None else None

    @property
    def _running(self) -> bool:
        """Started, its components launched (during the startup hooks ``self.worker`` may be
        a previous run's, its lease given up)."""
        return self._started and self._launched

    @property
    def quieted(self) -> bool:
        """The running pool is quiet: it takes no new job (``quiet()``)."""
        return self.quiet_since is not None

    async def quiet(self) -> None:
        """Take no new job, and stay alive: running jobs finish and are acknowledged, jobs
        fetched ahead (or handed over by an enqueue) go back to their queues at their place,
        enqueues no longer hand this pool jobs nor wake it; it keeps heartbeating until
        ``resume()`` or ``stop()``. Returns once the pool's idle marks are gone (it retries
        while Redis cannot be reached). Quiet twice is quiet once; nothing happens unless
        started. See docs/workers.md#quiet-a-pool."""
        worker = self.worker
        if not self._running or worker is None:
            return
        if worker.go_quiet(time.time()):
            log.info(
                "pool %s is quiet: it takes no new job, its %d running job(s) finish; it "
                "heartbeats until it is resumed or stopped",
                self.id,
                worker.busy,
            )
            await self._publish_quiet(worker.quiet_since)
        await worker.wait_unmarked()

    async def resume(self) -> None:
        """Take jobs again after ``quiet()`` (nothing happens unless quiet)."""
        worker = self.worker
        if self._running and worker is not None and worker.resume_fetching():
            log.info("pool %s resumed: it takes jobs again", self.id)
            await self._publish_quiet(None)

    async def _publish_quiet(self, since: float | None) -> None:
        """Put ``quiet_since`` in the pool's heartbeat info, and send a beat now."""
        heartbeater = self.heartbeater
        if heartbeater is None:
            return
        info = {k: v for k, v in heartbeater.info.items() if k != "quiet_since"}
        if since is not None:
            info["quiet_since"] = since
        heartbeater.info = info  # (replaced whole: the heartbeat thread reads it)
        if self.lease_keeper is None:
            return
        try:  # (failed: the heartbeat thread's next beat publishes it)
            await self.lease_keeper.renew()
        except Exception as exc:
            log.warning("pool %s: heartbeat info not sent now (%r)", self.id, exc)

    async def _carry_quiet(self, since: float | None) -> None:
        """(a pool carrying on under a new id, its lease lost) Quiet as it was."""
        if since is not None and self.worker is not None:
            self.worker.go_quiet(since)
            await self._publish_quiet(since)

    def _remote_request(self, request: str) -> None:
        """(on the event loop, handed by the heartbeat thread) A new request of
        ``Client.quiet_pool`` / ``resume_pool`` (admin/pools.py): quiet or resume now."""
        if not self._started or self._rebirth_over:  # (the stop cancelled the last of them)
            return
        if not self._launched:  # (startup hooks: self.worker may be a previous run's) later
            self._request_at_start = request
            return
        quiet = request.startswith("quiet:")
        log.info("pool %s: %s requested remotely", self.id, "quiet" if quiet else "resume")
        task = asyncio.create_task(
            self.quiet() if quiet else self.resume(), name="errands-remote-quiet"
        )
        self._remote_tasks.add(task)  # (held until done)
        task.add_done_callback(self._remote_tasks.discard)

    def _after_launch(self, names: list[str]) -> None:
        """(start, its components launched) Log the start; a remote request that came during
        the startup hooks (the last one) applies now."""
        self._launched = True
        log.info(
            "pool %s started: %d job type%s, concurrency %d, Redis %s, namespace %r",
            self.id,
            len(names),
            "" if len(names) == 1 else "s",
            self.concurrency,
            self._where(),
            self.namespace,
        )
        request, self._request_at_start = self._request_at_start, None
        if request is not None:
            self._remote_request(request)

    def _on_control(self, message: str) -> None:
        """(the notifier) A cancel or destroy request for a job this pool may run."""
        command, _, job_id = message.partition(":")
        if self.worker is not None and command in ("cancel", "destroy"):
            self.worker.cancel_job(job_id, destroy=command == "destroy")

    def end_grace(self) -> None:
        """End the grace of a ``stop()`` in progress now: running async jobs are cancelled and
        requeued at once (what a second SIGINT/SIGTERM does)."""
        self._grace_over.set()
