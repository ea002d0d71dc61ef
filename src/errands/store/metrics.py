"""Activity counters for charts: per minute and per hour, how many attempts finished, failed
(to be retried) and died, and per job name how long the started jobs had waited.

Pools count in memory (:class:`Counters`) and add their counts to Redis every few seconds in
one pipeline (:meth:`Counters.flush`), so the hot path pays nothing but a dict update. Each
bucket is one HASH, ``metrics:m:<minute>`` or ``metrics:h:<hour>`` (epoch seconds of its
start), with fields ``done``, ``failed``, ``dead``, ``wait:<name>`` (sum of waits, ms) and
``started:<name>``, and a TTL: minute buckets live 2 hours, hour buckets 8 days. So the data is
bounded by time (at most 120 + 192 buckets per namespace) and by the number of job names.
Counts are approximate: a pool that dies loses the counts of its last seconds, and an attempt
whose acknowledgement was refused (the job had been given to another pool) is still counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from ..aio import cancel_and_wait
from .connection import REDIS_ERRORS
from .keys import Keys
from .stored import stored_number

__all__ = ["HOUR_TTL", "MINUTE_TTL", "Bucket", "Counters", "read_buckets"]

log = logging.getLogger("errands.metrics")

MINUTE_TTL = 2 * 3600
HOUR_TTL = 8 * 86400
MAX_PENDING_BUCKETS = 400  # minutes of counts kept while Redis is unreachable (oldest dropped)


class Counters:
    """The counts of one pool not yet added to Redis."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._refused = False
        self._minute = -1
        self._next_minute = -1.0  # (the end of _minute's: _minute <= at < _next_minute is in it)
        self._bucket: dict[str, int] | None = None  # the minute's of the last count (cached)
        self._fields: dict[str, tuple[str, str]] = {}  # job name -> its wait and started fields
        # the counts by minute (epoch seconds of its start); each hour's are their sum, made at
        # the flush: a job counted updates one bucket, not a minute's and an hour's
        self.pending: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def _minute_of(self, at: float) -> dict[str, int]:
        """The minute bucket of ``at`` (the last one is cached: the hot path)."""
        minute = int(at) // 60 * 60
        if minute != self._minute or self._bucket is None:
            # (a negative time's minute is int()'s, rounded toward 0: no range check fits it,
            # so an empty range sends each through here)
            end = minute + 60.0 if minute >= 0 else float(minute)
            self._minute, self._next_minute = minute, end
            self._bucket = self.pending[minute]
        return self._bucket

    def started(self, name: str, waited: float, at: float) -> None:
        """A job of ``name`` started at ``at`` after waiting ``waited`` seconds."""
        wait = round(waited * 1000)
        if wait < 0:  # (not max(0, ...): a builtin's call with its tuple, ~800 CPU instructions)
            wait = 0
        fields = self._fields.get(name)
        if fields is None:  # (the field names of each job name made once: the hot path)
            fields = self._fields[name] = ("wait:" + name, "started:" + name)
        waits, starts = fields
        bucket = self._bucket  # (the minute's of the last count, most often: no call; in it,
        # as int(at) // 60 * 60 == self._minute for at >= 0, without int()'s call)
        if bucket is None or not self._minute <= at < self._next_minute:
            bucket = self._minute_of(at)
        bucket[waits] += wait
        bucket[starts] += 1

    def ended(self, outcome: str, at: float) -> None:
        """An attempt ended: ``done``, ``failed`` (will be retried) or ``dead``."""
        bucket = self._bucket  # (as started's)
        if bucket is None or not self._minute <= at < self._next_minute:
            bucket = self._minute_of(at)
        bucket[outcome] += 1

    async def flush(self, redis: Any, keys: Keys) -> None:
        """Add the counts to Redis (one pipeline); on failure they are kept for next time."""
        if not self.pending:
            return
        taken, self.pending = self.pending, defaultdict(lambda: defaultdict(int))
        self._bucket = None
        hours: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for start, fields in taken.items():
            hour = hours[start // 3600 * 3600]
            for name, value in fields.items():
                hour[name] += value
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for buckets, key_of, ttl in (
                    (taken, keys.metrics_minute, MINUTE_TTL),
                    (hours, keys.metrics_hour, HOUR_TTL),
                ):
                    for start, fields in buckets.items():
                        key = key_of(start)
                        for name, value in fields.items():
                            pipe.hincrby(key, name, value)
                        pipe.pexpire(key, ttl * 1000)
                await pipe.execute()
        except BaseException:
            for minute, fields in taken.items():
                for name, value in fields.items():
                    self.pending[minute][name] += value
            while len(self.pending) > MAX_PENDING_BUCKETS:
                del self.pending[min(self.pending)]
            raise

    def start(self, redis: Any, keys: Keys) -> None:
        """Start flushing in the background (every 5 s) until :meth:`close`."""
        self._task = asyncio.create_task(self.flush_every(redis, keys), name="errands-metrics")

    async def close(self, redis: Any, keys: Keys, timeout: float) -> None:
        """Stop the background flushes and flush what is left."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        await self.flush_quietly(redis, keys, timeout)

    async def flush_every(self, redis: Any, keys: Keys, every: float = 5.0) -> None:
        """Flush every ``every`` seconds until cancelled (a pool's background task)."""
        while True:
            await asyncio.sleep(every)
            await self.flush_quietly(redis, keys, every)

    async def flush_quietly(self, redis: Any, keys: Keys, timeout: float) -> None:
        """Flush; an unreachable Redis keeps the counts for the next flush. A refusal (an ACL
        user without ``+pexpire``, say) is logged once and never stops the pool: the counters
        only feed the dashboard's charts."""
        try:
            with contextlib.suppress(*REDIS_ERRORS, TimeoutError):
                # (not wait_for: Python 3.11's loses a cancel that comes as the flush ends, and
                # the pool's stop would wait for this loop for good)
                async with asyncio.timeout(timeout):
                    await self.flush(redis, keys)
        except RedisError as exc:
            if not self._refused:
                log.warning("activity counters not written (the dashboard's charts): %s", exc)
            self._refused = True


@dataclass
class Bucket:
    start: float
    done: int = 0
    failed: int = 0
    dead: int = 0
    waits: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (ms sum, count)


async def read_buckets(redis: Any, keys: Keys, kind: str, starts: list[int]) -> list[Bucket]:
    """The buckets (``kind`` ``m`` or ``h``) starting at ``starts``; missing ones are empty."""
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(keys.metrics_minute(start) if kind == "m" else keys.metrics_hour(start))
        raws = await pipe.execute()
    out = []
    for start, raw in zip(starts, raws, strict=True):
        fields = {_text(k): n for k, v in raw.items() if (n := stored_number(v)) is not None}
        bucket = Bucket(float(start), fields.get("done", 0), fields.get("failed", 0),
                        fields.get("dead", 0))  # fmt: skip
        for name, value in fields.items():
            if name.startswith("started:"):
                job = name[len("started:") :]
                bucket.waits[job] = (fields.get("wait:" + job, 0), value)
        out.append(bucket)
    return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
