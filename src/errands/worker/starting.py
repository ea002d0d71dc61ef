"""The part of a pool's start before its components are built: check Redis, take the lease
(register), run the startup hooks, write the caps and publish the names served; undone when
the start fails or is cancelled (a signal to a worker process that is still starting)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..store.connection import check
from ..store.hotcalls import WorkerScripts
from ..store.served import ServedNames
from .limitwatch import write_caps
from .registry import Hook, call_hook

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..handlers import JobType
    from ..store.keys import Keys

__all__ = ["Starting"]


class Starting:
    """Mixin of WorkerPool."""

    id: str
    url: str | None
    job_types: dict[str, JobType]
    context: dict[str, Any]
    dead_timeout: float
    redis_functions: bool
    _started: bool
    _on_startup: list[Hook]
    _served: ServedNames

    if TYPE_CHECKING:  # provided by WorkerPool (and its LeaseRecovery mixin)

        @property
        def keys(self) -> Keys: ...

        @property
        def redis(self) -> Redis: ...

        async def _register(self, names: list[str]) -> None: ...

        def _begin_run(self) -> None: ...

        def _check_lease(self) -> None: ...

        async def _give_up_lease(self) -> None: ...

    async def _start_up(self) -> tuple[WorkerScripts, list[str]]:
        """(start) Up to the launch: the scripts and the job names served."""
        await check(self.redis, self.url)
        # a new identity for every run: a restarted pool never mistakes the jobs a previous
        # run left in progress (a reaper gives those back) for orphans of its own
        self.id = uuid.uuid4().hex[:16]
        names = sorted(self.job_types)
        await self._register(names)  # no lease, no start
        self._begin_run()  # (leasing.py) started, not launched: a lost lease fails the start
        self._served = ServedNames(self.redis, self.keys, lambda: self.id, names, self.dead_timeout)
        published = False  # (whether the names served were published: withdrawn then)
        try:
            for hook in self._on_startup:
                await call_hook(hook, self.context)
            scripts = WorkerScripts(self.redis, self.keys, self.redis_functions)
            await write_caps(self.redis, self.keys, self.job_types, names)
            published = True
            await self._served.publish()
            self._check_lease()  # lost during the hooks: the start fails (no rebirth)
        except BaseException:  # (a hook failed, or the start was cancelled: a signal)
            self._started = False  # nothing runs yet: a later start() must really start
            if published:
                await self._served.withdraw()
            await self._give_up_lease()
            raise
        return scripts, names
