"""Cancel requests for running jobs, the worker's side: act on a request (pub/sub, or the
stored request re-read every second as a fallback) by cancelling the job's task."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..job import Job
    from ..store.keys import Keys
    from ..store.scripts import Scripts

__all__ = ["CancelRequests"]


class CancelRequests:
    """Mixin of Worker."""

    running: dict[str, tuple[Job, asyncio.Task[Any]]]
    scripts: Scripts
    keys: Keys
    _cancel_requests: dict[str, bool]  # job id -> destroy
    _early_cancels: dict[str, tuple[bool, float]]  # job id -> (destroy, monotonic)
    _confirming: set[asyncio.Task[None]]

    async def sweep_cancel_requests(self, interval: float = 1.0) -> None:
        """Act on cancel requests stored in Redis: the fallback when a pub/sub message was
        missed (the pool was reconnecting)."""
        while True:
            await asyncio.sleep(interval)
            if not self.running:
                continue
            ids = list(self.running)
            try:
                kinds = await self.scripts.redis.hmget(self.keys.cancel_requests, ids)
            except Exception:  # any failure: try again next time
                continue
            for job_id, kind in zip(ids, kinds, strict=True):
                fresh = job_id in self.running and job_id not in self._cancel_requests
                if kind is not None and fresh:
                    self.cancel_job(job_id, destroy=kind in (b"destroy", "destroy"))

    def confirm_early_cancel(self, job_id: str) -> None:
        """A cancel message for ``job_id`` came shortly before it started here: act on it only
        if the request is stored (it is, while the attempt it was meant for runs). A message
        meant for an earlier attempt that ran elsewhere (every pool hears every message) must
        not cancel this one: the job may have been rescheduled since."""

        async def confirm() -> None:
            try:
                kind = await self.scripts.redis.hget(self.keys.cancel_requests, job_id)
            except Exception:  # the sweep re-reads the stored requests every second anyway
                return
            if kind is not None and job_id in self.running:
                self.cancel_job(job_id, destroy=kind in (b"destroy", "destroy"))

        task = asyncio.ensure_future(confirm())
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    def cancel_job(self, job_id: str, destroy: bool = False) -> bool:
        """Cancel a running job on request (it is not retried); False if it does not run here."""
        entry = self.running.get(job_id)
        if entry is None:
            # the request can overtake the fetch that brings the job here: remember it briefly
            now = time.monotonic()
            if len(self._early_cancels) >= 256:
                self._early_cancels = {
                    i: v for i, v in self._early_cancels.items() if now - v[1] < 10.0
                }
            self._early_cancels[job_id] = (destroy, now)
            return False
        self._cancel_requests[job_id] = destroy

        def cancel() -> None:
            if self.running.get(job_id) is entry:  # its handler still runs
                entry[1].cancel()

        # on the next turn of the loop: a task cancelled before it ran its first line would end
        # without settling its job, which would then stay in the in-progress set
        asyncio.get_running_loop().call_soon(cancel)
        return True
