"""Typed wrappers around the Lua scripts in ``lua/``: one method per script.

redis-py's ``register_script`` runs EVALSHA and reloads a script after NOSCRIPT (a restarted or
``SCRIPT FLUSH``-ed server), so no script cache is kept here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from .keys import Keys

__all__ = ["Acked", "Fetched", "Scripts", "Settle", "lua_source"]

Arg = str | bytes | int | float


@cache
def lua_source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return resources.files("errands.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Fetched:
    """One job moved into a pool's in-progress set by ``fetch``."""

    queue_index: int
    id: str
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Acked:
    """A job that succeeded, as handed to ``ack``."""

    id: str
    name: str
    result: bytes
    started_ms: int
    ttl_ms: int
    attempt: int


@dataclass(slots=True)
class Settle:
    """How to settle a job that did not succeed (see lua/settle.lua)."""

    id: str
    name: str
    mode: str
    target: str
    now_ms: int
    attempt: int
    started_ms: int = 0
    envelope: bytes = b""
    score_ms: int = 0
    error: bytes = b""
    dead_max: int = 10_000
    dead_min_ms: int = 0
    counter: str = ""
    history: bool = True
    ttl_ms: int = 0


class Scripts:
    """The scripts bound to one client and namespace."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._s = {
            name: redis.register_script(lua_source(name))
            for name in (
                "enqueue",
                "enqueue_unique",
                "replace_envelope",
                "fetch",
                "ack",
                "settle",
                "promote",
                "heartbeat",
                "dead_pools",
                "reap",
                "unique_gc",
                "checkin",
                "trim_history",
                "move",
                "trim_set",
                "cancel",
            )
        }

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self._s[name](keys=list(keys), args=list(args))

    async def enqueue(self, names: Sequence[str], jobs: Sequence[Sequence[Arg]]) -> int:
        """Store jobs; each job is (name index 1-based, name, id, envelope, priority, due ms)."""
        k = self.keys
        keys = [k.jobs, k.priorities, k.seq, k.names, k.idle, k.listening]
        for name in names:
            keys += (k.queue(name), k.scheduled(name))
        args: list[Arg] = [k.wake_channel, len(jobs), k.events_channel]
        for job in jobs:
            args.extend(job)
        return int(await self._call("enqueue", keys, args))

    async def enqueue_unique(
        self,
        name: str,
        id: str,
        envelope: bytes,
        priority: int,
        due_ms: int,
        digest: str,
        lock_expiry_ms: int,
        now_ms: int,
    ) -> tuple[bool, str]:
        k = self.keys
        keys = [k.jobs, k.priorities, k.seq, k.names, k.idle, k.queue(name), k.scheduled(name)]
        keys += (k.unique, k.unique_of_job, k.unique_expiry, k.listening)
        args: list[Arg] = [
            k.wake_channel,
            name,
            id,
            envelope,
            priority,
            due_ms,
            digest,
            lock_expiry_ms,
            now_ms,
            k.events_channel,
        ]
        stored, job_id = await self._call("enqueue_unique", keys, args)
        return bool(stored), job_id.decode() if isinstance(job_id, bytes) else str(job_id)

    async def replace_envelope(self, digest: str, id: str, old: bytes, new: bytes) -> bool:
        keys = [self.keys.jobs, self.keys.unique]
        return bool(await self._call("replace_envelope", keys, [digest, id, old, new]))

    async def fetch(
        self,
        pool_id: str,
        now_ms: int,
        batch: int,
        queues: Sequence[tuple[str, int]],
        isolate: int = 0,
    ) -> list[Fetched]:
        """Move up to ``batch`` jobs from ``queues`` ((name, max_concurrency), in try order);
        with ``isolate``, at most one job recovered that many times from dead pools runs here."""
        k = self.keys
        keys = [k.jobs, k.running, k.in_progress(pool_id), k.paused, k.idle]
        keys += (k.unique, k.unique_of_job, k.unique_expiry, k.listening, k.recoveries)
        args: list[Arg] = [pool_id, now_ms, batch, k.events_channel, isolate]
        for name, limit in queues:
            keys.append(k.queue(name))
            args += (name, limit)
        flat = await self._call("fetch", keys, args)
        return [
            Fetched(int(flat[i]), flat[i + 1].decode(), flat[i + 2]) for i in range(0, len(flat), 3)
        ]

    async def ack(
        self, pool_id: str, done: Sequence[Acked], wake: bool, now_ms: int, history: bool
    ) -> int:
        """Acknowledge finished jobs."""
        k = self.keys
        keys = [k.jobs, k.running, k.in_progress(pool_id), k.priorities, k.recoveries]
        keys += (k.stats, k.idle, k.history, k.history_data, k.checkins, k.listening, k.errors)
        keys.append(k.cancel_requests)
        args: list[Arg] = [k.wake_channel, "1" if wake else "0", k.events_channel, now_ms]
        args += ("1" if history else "0", len(done))
        index: dict[str, int] = {}
        for a in done:
            keys.append(k.done(a.id))
            i = index.setdefault(a.name, len(index) + 1)
            args += (a.id, a.name, i, a.result, a.started_ms, a.ttl_ms, a.attempt)
        keys += (k.history_of(name) for name in index)
        return int(await self._call("ack", keys, args))

    async def settle(self, pool_id: str, s: Settle) -> bool:
        """Retry, bury, drop, cancel or requeue one job."""
        k = self.keys
        keys = [k.jobs, k.running, k.in_progress(pool_id), k.priorities, k.recoveries]
        keys += (k.errors, k.stats, k.seq, k.idle, s.target, k.history, k.history_data)
        keys += (k.history_of(s.name), k.done(s.id), k.listening, k.checkins, k.cancel_requests)
        keys.append(k.cancelled)
        args: list[Arg] = [s.id, s.name, s.mode, s.envelope, s.score_ms, s.error, s.dead_max]
        args += (s.dead_min_ms, k.wake_channel, s.counter, s.now_ms, s.attempt)
        args += ("1" if s.history else "0", k.events_channel, s.ttl_ms, s.started_ms)
        return bool(await self._call("settle", keys, args))

    async def promote(self, names: Sequence[str], now_ms: int, limit: int) -> tuple[int, int]:
        """Move due scheduled and retry jobs to their queues; returns (moved, earliest due)."""
        k = self.keys
        keys = [k.priorities, k.seq, k.idle]
        for name in names:
            keys += (k.queue(name), k.scheduled(name), k.retry(name))
        moved, earliest = await self._call("promote", keys, [now_ms, limit, k.wake_channel])
        return int(moved), int(earliest)

    async def checkin(self, id: str, name: str, data: bytes) -> bool:
        k = self.keys
        keys = [k.checkins, k.jobs, k.listening]
        return bool(await self._call("checkin", keys, [id, name, data, k.events_channel]))

    async def trim_history(
        self, names: Sequence[str], older_than_ms: int, keep: int, limit: int = 10_000
    ) -> int:
        k = self.keys
        keys = [k.history, k.history_data, *(k.history_of(n) for n in names)]
        return int(await self._call("trim_history", keys, [older_than_ms, keep, limit]))

    async def move(
        self, id: str, name: str, source: str, mode: str, due_ms: int = 0, envelope: bytes = b""
    ) -> bool:
        """Move a waiting job out of ``source``: onto its queue, into its scheduled set, or
        delete it (mode ``queue``, ``schedule``, ``delete``)."""
        k = self.keys
        target = k.scheduled(name) if mode == "schedule" else k.queue(name)
        keys = [k.jobs, k.priorities, k.seq, k.idle, source, target, k.errors, k.recoveries]
        keys += (k.done(id), k.unique, k.unique_of_job, k.unique_expiry, k.checkins)
        return bool(await self._call("move", keys, [id, mode, due_ms, envelope, k.wake_channel]))

    async def cancel(self, id: str, name: str, now_ms: int, ttl_ms: int) -> str:
        k = self.keys
        keys = [k.jobs, k.queue(name), k.scheduled(name), k.retry(name), k.cancelled, k.dead]
        keys += (k.done(id), k.unique, k.unique_of_job, k.unique_expiry, k.listening)
        keys.append(k.cancel_requests)
        args: list[Arg] = [id, now_ms, ttl_ms, k.control_channel, k.events_channel, name]
        result = await self._call("cancel", keys, args)
        return result.decode() if isinstance(result, bytes) else str(result)

    async def trim_set(self, key: str, older_than_ms: int, keep: int) -> int:
        """Bound a set of ended jobs (dead, cancelled), deleting the trimmed jobs."""
        k = self.keys
        keys = [key, k.jobs, k.priorities, k.errors]
        return int(await self._call("trim_set", keys, [older_than_ms, keep]))

    async def unique_gc(self, now_ms: int, limit: int = 1000) -> int:
        k = self.keys
        keys = [k.unique, k.unique_of_job, k.unique_expiry]
        return int(await self._call("unique_gc", keys, [now_ms, limit]))

    async def heartbeat(self, pool_id: str, info: bytes, ttl_ms: int) -> int:
        keys = [self.keys.pools, self.keys.pool_info(pool_id)]
        return int(await self._call("heartbeat", keys, [pool_id, info, ttl_ms]))

    async def dead_pools(self, dead_after_ms: int) -> list[str]:
        ids = await self._call("dead_pools", [self.keys.pools], [dead_after_ms])
        return [i.decode() for i in ids]

    async def reap(
        self,
        pool_id: str,
        dead_after_ms: int,
        max_recoveries: int,
        error: bytes,
        members: Sequence[tuple[str, str, str]],
    ) -> tuple[int, int, bool]:
        """Take back a dead pool's jobs, given as (member, id, name). Returns (requeued,
        taken out: buried as poison or cancelled on request, whether the pool was removed)."""
        k = self.keys
        keys = [k.pools, k.in_progress(pool_id), k.pool_info(pool_id), k.jobs, k.running]
        keys += (k.priorities, k.recoveries, k.dead, k.errors, k.seq, k.idle, k.stats)
        keys += (k.cancel_requests, k.cancelled)
        index: dict[str, int] = {}
        args: list[Arg] = [pool_id, dead_after_ms, max_recoveries, k.wake_channel, error]
        for member, id, name in members:
            if name not in index:
                index[name] = len(index) + 1
                keys.append(k.queue(name))
            args += (member, id, name, index[name])
        requeued, buried, removed, cancelled = await self._call("reap", keys, args)
        return int(requeued), int(buried) + int(cancelled), bool(removed)
