"""The reaper: gives the jobs of dead pools back to their queues, exactly once.

Every pool runs one. A pool is dead when its heartbeat (Redis clock) is older than
``dead_timeout``. A reaper only reaps while its own pool has itself been beating steadily for at
least ``dead_timeout``: after a Redis stall or outage every heartbeat looks old, and waiting one
timeout lets the live pools beat again first.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import orjson

from .clock import Clock
from .connection import REDIS_ERRORS
from .heartbeat import Heartbeater
from .scripts import Scripts

__all__ = ["Reaper"]

log = logging.getLogger("errands.reaper")


class Reaper:
    def __init__(
        self,
        scripts: Scripts,
        clock: Clock,
        own_pool_id: str,
        heartbeater: Heartbeater | None,
        dead_timeout: float,
        interval: float,
        max_recoveries: int,
    ) -> None:
        self.scripts = scripts
        self.clock = clock
        self.own_pool_id = own_pool_id
        self.heartbeater = heartbeater
        self.dead_timeout_ms = int(dead_timeout * 1000)
        self.dead_timeout = dead_timeout
        self.interval = interval
        self.max_recoveries = max_recoveries
        self.requeued = 0
        self.buried = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval * (0.75 + random.random() / 2))
            try:
                await self.reap_once()
            except REDIS_ERRORS as exc:
                log.warning("reaper could not reach Redis: %s", exc)

    async def reap_once(self) -> int:
        """Reap every dead pool now; returns how many jobs were given back or buried."""
        if self.heartbeater is not None and self.heartbeater.healthy_for() < self.dead_timeout:
            return 0
        moved = 0
        for pool_id in await self.scripts.dead_pools(self.dead_timeout_ms):
            if pool_id != self.own_pool_id:
                moved += await self.reap_pool(pool_id)
        return moved

    async def reap_pool(self, pool_id: str) -> int:
        key = self.scripts.keys.in_progress(pool_id)
        error = orjson.dumps(
            {
                "error": f"worker died while running this job {self.max_recoveries} times",
                "at": self.clock.now(),
                "attempt": 0,
            }
        )
        moved = 0
        while True:
            raw: list[Any] = await self.scripts.redis.zrange(key, 0, 499)
            members = []
            for m in raw:
                member = m.decode()
                job_id, _, name = member.partition(":")
                members.append((member, job_id, name))
            requeued, buried, removed = await self.scripts.reap(
                pool_id, self.dead_timeout_ms, self.max_recoveries, error, members
            )
            moved += requeued + buried
            self.requeued += requeued
            self.buried += buried
            if requeued or buried:
                log.warning(
                    "reaped dead pool %s: %d jobs requeued, %d buried as poison",
                    pool_id,
                    requeued,
                    buried,
                )
            if removed or not members or (requeued + buried == 0):
                return moved
