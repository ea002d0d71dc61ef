"""The requeuer: one component serving both the scheduled and the retry set of each job name,
moving due jobs onto their queues. Also releases expired unique locks."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Sequence
from typing import Any

from ..clock import Clock, to_ms
from ..outagelog import OutageLog
from ..store.connection import REDIS_ERRORS
from ..store.keyrepair import own_key_repair
from ..store.scripts import Scripts
from ..workflows.store import WorkflowScripts
from .namekeys import KeysLeft
from .repairs import log_refusal

__all__ = ["Requeuer", "trim_history"]

log = logging.getLogger("errands.requeuer")


class Requeuer:
    def __init__(
        self,
        scripts: Scripts,
        names: Sequence[str],
        clock: Clock,
        poll_interval: float = 1.0,
        batch: int = 1000,
        gc_every: float = 60.0,
        history_retention: float = 15 * 86400.0,
        history_max: int = 100_000,
        ended_max_age: float = 180 * 86400.0,
        ended_max_jobs: int = 10_000,
    ) -> None:
        self.scripts = scripts
        self.names = list(names)
        self.clock = clock
        self.poll_interval = poll_interval
        self.batch = batch
        self.gc_every = gc_every
        self.history_retention = history_retention
        self.history_max = history_max
        self.ended_max_age = ended_max_age
        self.ended_max_jobs = ended_max_jobs
        self.moved = 0
        self.workflows = WorkflowScripts(scripts.redis, scripts.keys)
        self._kick = asyncio.Event()
        # the job names promote.lua leaves alone (one of their keys of another type): logged once
        self._left = KeysLeft(scripts, log, "requeuer", "its due jobs are not moved to its queue")
        self._bad_history: set[str] = set()  # history keys of another type logged (trim_history)

    def kick(self) -> None:
        """Promote now (used after the clock was moved in tests, and by drain)."""
        self._kick.set()

    async def promote_once(self) -> tuple[int, int]:
        """Move every due job, and continue the walks of workflow dependents left on the work
        list (a pool that died mid-walk leaves its part to the others); returns (moved plus
        work items taken, earliest due ms still waiting or -1). A job name one of whose keys
        holds another type is left alone (its due jobs stay), logged once while so."""
        taken = await self.workflows.cascade_all()
        total = 0
        while True:
            done = await self.scripts.promote_report(
                self.names, to_ms(self.clock.now()), self.batch
            )
            total += done.moved
            if done.moved < self.batch:
                self.moved += total
                await self._left.note(done.left)
                return total + taken, done.earliest

    async def collect_garbage(self) -> None:
        """Release expired unique locks, trim the dead and cancelled sets and the history to
        their retention and length."""
        now = self.clock.now()
        await self.scripts.unique_gc(to_ms(now))
        keys = self.scripts.keys
        for ended in (keys.dead, keys.cancelled):  # (a job buried by a reaper trims nothing)
            while (
                await self.scripts.trim_set(
                    ended, to_ms(now - self.ended_max_age), self.ended_max_jobs
                )
                >= 1000
            ):
                pass
        raw: set[Any] = await self.scripts.redis.smembers(self.scripts.keys.names)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        cutoff = to_ms(now - self.history_retention)
        while (
            await trim_history(
                self.scripts, names, cutoff, self.history_max, logged=self._bad_history
            )
            >= 1000
        ):
            pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_gc = loop.time()
        delay = 0.05
        outage = OutageLog(log, "requeuer (promotes due jobs, collects garbage)")
        while True:
            self._kick.clear()
            wait = self.poll_interval
            try:
                _moved, earliest = await self.promote_once()
                if loop.time() >= next_gc:
                    await self.collect_garbage()
                    next_gc = loop.time() + self.gc_every
                if earliest >= 0:
                    wait = min(wait, max(0.001, earliest / 1000 - self.clock.now()))
                delay = 0.05
                outage.ok()
            except Exception as exc:  # not only REDIS_ERRORS (MISCONF, OOM...): never die
                if isinstance(exc, REDIS_ERRORS):
                    outage.failed(exc)
                elif not await log_refusal(outage, exc, self.scripts.redis, self.scripts.keys):
                    log.error("requeuer pass failed: %r", exc)
                wait, delay = delay, min(delay * 2, 5.0)
            try:
                async with asyncio.timeout(wait):
                    await self._kick.wait()
            except TimeoutError:
                pass


async def trim_history(
    scripts: Scripts,
    names: Sequence[str],
    older_than_ms: int,
    keep: int,
    limit: int = 1000,
    logged: set[str] | None = None,
) -> int:
    """Drop the oldest attempt records past ``older_than_ms`` or beyond the newest ``keep``
    over every job name's history (and the global index of versions before issue 15), at most
    ``limit``; returns how many were chosen (lua/trim_history.lua). A name whose history key
    holds another type (written by hand, a bad restore) is skipped, the others trimmed: logged
    once while so when ``logged`` (the keys logged) is given, else each call."""
    redis: Any = scripts.redis  # (its stubs give unions for every reply)
    k = scripts.keys
    async with redis.pipeline(transaction=False) as pipe:
        for key in (k.history, *(k.history_of(n) for n in names)):
            pipe.zcard(key)
            pipe.zrange(key, 0, limit - 1, withscores=True)
        raw = await pipe.execute(raise_on_error=False)
    names, raw = _fit_histories(scripts, names, raw, set() if logged is None else logged)
    excess = sum(raw[2::2]) - keep  # (the global index repeats the others' entries)
    chosen: dict[Any, None] = {}
    for member, score in heapq.merge(*raw[1::2], key=lambda pair: pair[1]):
        if len(chosen) >= limit or (len(chosen) >= excess and score >= older_than_ms):
            break
        chosen[member] = None
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in chosen]
    return await scripts.trim_history(names, members) if members else 0


def _fit_histories(
    scripts: Scripts, names: Sequence[str], raw: list[Any], logged: set[str]
) -> tuple[list[str], list[Any]]:
    """The names whose history key was read (ZCARD, ZRANGE) and their replies, the global
    index's first: a name's key of another type (WRONGTYPE) skipped and logged once while so
    (``logged``); any other error raised, as the global index's."""
    fit, replies = [], raw[:2]
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    for i, name in enumerate(names):
        pair = raw[2 * i + 2 : 2 * i + 4]
        key = scripts.keys.history_of(name)
        wrong = [r for r in pair if isinstance(r, Exception)]
        if not wrong:
            fit.append(name)
            replies += pair
            logged.discard(key)
        elif not str(wrong[0]).startswith("WRONGTYPE"):
            raise wrong[0]
        elif key not in logged:
            logged.add(key)
            log.error(
                "job name %s: its history is not trimmed: its key %s holds another type "
                "(written by hand, a bad restore); repair it: %s; the other names' history is "
                "trimmed",
                name,
                key,
                own_key_repair(key),
                extra={"job_name": name},
            )
    return fit, replies
