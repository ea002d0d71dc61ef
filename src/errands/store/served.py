"""Which job names the running pools serve, for catching typos: an enqueue of a name no pool
serves warns (or raises, ``Enqueuer(strict=True)``), and ``inspect queues`` marks such queues.

Each pool keeps one SET of its names (``Keys.serves(pool_id)``): written when it starts,
deleted when it stops, with a TTL it refreshes every third of it, so a pool that dies without
stopping drops out within the TTL on its own. Readers take the union over the registered pools.
A hint for people, not part of any guarantee: nothing waits on it, and a name seen served once
is trusted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .keys import Keys

__all__ = ["ServedNames", "served_names"]

log = logging.getLogger("errands.pool")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def served_names(redis: Any, keys: Keys) -> set[str]:
    """The job names served by the running pools of the namespace (two round trips)."""
    pools = [_text(p) for p in await redis.zrange(keys.pools, 0, -1)]
    if not pools:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.smembers(keys.serves(pool))
        sets = await pipe.execute()
    return {_text(name) for members in sets for name in members}


class ServedNames:
    """One pool's published names: ``publish()`` at start, ``run()`` as a task, ``withdraw()``
    at stop."""

    def __init__(self, redis: Any, keys: Keys, pool_id: str, names: list[str], ttl: float) -> None:
        self.redis = redis
        self.key = keys.serves(pool_id)
        self.names = names
        self.ttl_ms = int(ttl * 1000)

    async def publish(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.sadd(self.key, *self.names)
            pipe.pexpire(self.key, self.ttl_ms)
            await pipe.execute()

    async def run(self) -> None:
        """Refresh the TTL every third of it (write the set again if it expired meanwhile)."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.redis.pexpire(self.key, self.ttl_ms):
                    await self.publish()
            except Exception as exc:  # a hint only: never let it stop the pool
                log.debug("could not refresh the served job names: %r", exc)

    async def withdraw(self) -> None:
        try:
            await self.redis.delete(self.key)
        except Exception as exc:
            log.debug("could not withdraw the served job names: %r", exc)
