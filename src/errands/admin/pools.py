"""Quiet or resume a running pool from outside its process (``Client.quiet_pool`` /
``resume_pool``: the dashboard's Quiet button, ``errands pools quiet``), as Sidekiq's Web UI
"Quiet" and Celery's ``control cancel_consumer`` do.

The request is recorded in Redis (``Keys.quiet_requests``: pool id -> "quiet:<ms>" or
"resume:<ms>", lua/quiet_request.lua); the pool reads it with its next heartbeat
(lua/heartbeat.lua, one HGET) and calls its own ``quiet()`` or ``resume()`` on its event loop.
The field goes when the pool leaves the registry (its stop, or a reaper taking its lease); pool
ids are new at every start, so a later pool never inherits one. The latest request wins over a
local ``quiet()``/``resume()`` (or SIGTSTP) only when it is new: a pool quieted remotely then
resumed locally stays resumed until the next remote request. See docs/workers.md.
"""

from __future__ import annotations

from redis.exceptions import ResponseError

from ..errors import PoolNotFoundError
from ..store.keyrepair import repair_hint
from ..store.scripts import Scripts
from .inputs import text_arg

__all__ = ["PoolAdmin"]


class PoolAdmin:
    """Mixin of Client."""

    scripts: Scripts

    async def quiet_pool(self, pool_id: str) -> bool:
        """Ask the running pool ``pool_id`` to take no new job while its running ones finish
        (``WorkerPool.quiet()``), at its next heartbeat. False when it is quiet already (or
        asked to be); ``PoolNotFoundError`` when no pool of that id is registered."""
        return await self._request(pool_id, "quiet")

    async def resume_pool(self, pool_id: str) -> bool:
        """Ask the running pool ``pool_id`` to take jobs again (``WorkerPool.resume()``), at
        its next heartbeat. False when it is neither quiet nor asked to be;
        ``PoolNotFoundError`` when no pool of that id is registered."""
        return await self._request(pool_id, "resume")

    async def _request(self, pool_id: str, request: str) -> bool:
        pool_id = text_arg("pool_id", pool_id)
        try:
            done = await self.scripts.quiet_request(pool_id, request)
        except ResponseError as exc:  # (a registry key of another type: named, with its repair)
            hint = await repair_hint(self.scripts.redis, self.scripts.keys, exc)
            if not hint:
                raise
            raise ResponseError(f"{exc}{hint}") from exc
        if done < 0:
            raise PoolNotFoundError(f"no running pool {pool_id!r} (see Client.worker_pools())")
        return done == 1
