"""A pool that died holding a job: registered, one job of ``work`` fetched, its heartbeat long
past (for the reaper's tests)."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Scripts

__all__ = ["dead_pool_row"]


async def dead_pool_row(redis: Redis, namespace: str, scripts: Scripts) -> tuple[str, str, str]:
    """Pool ``dead`` holding one ``work`` job; its in-progress row as ``Scripts.reap`` takes it."""
    keys = Keys(namespace)
    assert await Enqueuer(redis, namespace=namespace).enqueue("work") is not None
    await scripts.heartbeat("dead", b"{}", 60_000, mode="register")
    assert await scripts.fetch("dead", 0, 10, [("work", 0)]) is not None
    await redis.zadd(keys.pools, {"dead": 1})
    [member] = [m.decode() for m in await redis.zrange(keys.in_progress("dead"), 0, -1)]
    return (member, member.partition(":")[0], "work")
