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
import time
from typing import Any

import orjson

from ..clock import Clock
from ..store.connection import REDIS_ERRORS
from ..store.keys import check_job_name
from ..store.scripts import Scripts
from .heartbeat import Heartbeater

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
            except Exception:  # the reaper must never die: it is how crashed pools come back
                log.exception("reaper pass failed")

    async def reap_once(self) -> int:
        """Reap every dead pool now; returns how many jobs were given back or buried."""
        beats = self.heartbeater
        if beats is not None and beats.healthy_for() < self.dead_timeout:
            return 0
        asked = time.monotonic()
        dead = await self.scripts.dead_pools(self.dead_timeout_ms)
        # If Redis stalled (DEBUG SLEEP, SIGSTOP, a long script) while the question waited, it
        # was answered with the clock jumped ahead and the beats of the live pools still queued
        # behind it: every pool looks dead. Trust only a prompt answer.
        slow = beats is not None and (
            time.monotonic() - asked > beats.interval or beats.healthy_for() < self.dead_timeout
        )
        if dead and slow:
            log.info("reaper: Redis answered slowly; not reaping this time")
            return 0
        moved = 0
        for pool_id in dead:
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
                try:
                    member = m.decode()
                    job_id, _, name = member.partition(":")
                    check_job_name(name)
                    if not job_id:
                        raise ValueError("no job id")
                except ValueError as exc:  # UnicodeDecodeError included
                    moved += await self._quarantine(key, m, exc)
                    continue
                members.append((member, job_id, name))
            requeued, buried, removed = await self.scripts.reap(
                pool_id, self.dead_timeout_ms, self.max_recoveries, error, members
            )
            moved += requeued + buried
            self.requeued += requeued
            self.buried += buried
            if requeued or buried:
                log.warning(
                    "reaped dead pool %s: %d jobs requeued, %d buried as poison or cancelled",
                    pool_id,
                    requeued,
                    buried,
                )
            if removed or not members or (requeued + buried == 0):
                return moved

    async def _quarantine(self, key: str, raw: bytes, problem: Exception) -> int:
        """An in-progress entry that is not ``<job id>:<job name>`` cannot go back to a queue:
        remove it, and bury the job it names (if that exists) with the reason."""
        redis = self.scripts.redis
        if not await redis.zrem(key, raw):
            return 0  # another reaper got it first
        k = self.scripts.keys
        job_id = raw.partition(b":")[0]
        reason = f"malformed in-progress entry {raw[:200]!r} ({problem})"
        log.error("reaper: %s; moved to the dead set", reason)
        if not job_id or not await redis.hexists(k.jobs, job_id):
            return 0
        now = self.clock.now()
        error = orjson.dumps({"error": reason, "at": now, "attempt": 0})
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.errors, job_id, error)
            pipe.zadd(k.dead, {job_id: int(now * 1000)})
            pipe.hincrby(k.stats, "dead", 1)
            await pipe.execute()
        self.buried += 1
        return 1
