"""Simulated re-sends of Lua scripts: redis-py sends a script call again (the same EVALSHA, KEYS
and ARGV) when the reply to the first send is lost. A wrapper records each call of a registered
script so that a test can send it again, and a snapshot of a namespace shows what changed."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from errands.store.keys import Keys

__all__ = ["Recorder", "refused", "snapshot"]


class Recorder:
    """Stands in for a registered script (``store._fire = Recorder(store._fire)``): records the
    KEYS, ARGV and reply of each call."""

    def __init__(self, script: AsyncScript) -> None:
        self.script = script
        self.calls: list[tuple[list[Any], list[Any], Any]] = []

    async def __call__(
        self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        reply = await self.script(keys=list(keys), args=list(args))
        self.calls.append((list(keys), list(args), reply))
        return reply

    @property
    def reply(self) -> Any:
        """The reply of the latest call."""
        return self.calls[-1][2]

    async def resend(self, index: int = -1) -> Any:
        """Send call ``index`` again, as redis-py does after a timeout; returns its reply."""
        keys, args, _reply = self.calls[index]
        return await self.script(keys=keys, args=args)


async def snapshot(redis: Redis, namespace: str) -> dict[bytes, tuple[bytes, Any]]:
    """Every key of ``namespace``: its type and content (sorted sets with their scores)."""
    out: dict[bytes, tuple[bytes, Any]] = {}
    async for key in redis.scan_iter(match=Keys(namespace).prefix + "*", count=1000):
        kind = await redis.type(key)
        content: Any
        if kind == b"hash":
            content = await redis.hgetall(key)
        elif kind == b"zset":
            content = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            content = sorted(await redis.smembers(key))
        elif kind == b"list":
            content = await redis.lrange(key, 0, -1)
        elif kind == b"string":
            content = (await redis.get(key), await redis.pttl(key) > 0)
        else:
            content = await redis.dump(key)
        out[key] = (kind, content)
    return out


async def refused(redis: Redis, namespace: str, call: Awaitable[Any], match: str) -> None:
    """``call`` fails with an error matching ``match`` and changes no key of ``namespace``."""
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=match):
        await call
    assert await snapshot(redis, namespace) == before
