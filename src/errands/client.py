"""The admin API: inspect and operate queues and jobs. The CLI and the dashboard use it."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from .connection import connect
from .keys import Keys

__all__ = ["Client"]


class Client:
    """``Client(redis, namespace=...)`` or ``Client.from_url(url, namespace=...)``."""

    def __init__(self, redis: Redis, *, namespace: str = "errands") -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self._owns_client = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Client:
        client = cls(connect(url), **kwargs)
        client._owns_client = True
        return client

    async def aclose(self) -> None:
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def pause(self, job_name: str) -> None:
        """Stop every pool from fetching ``job_name``; its jobs wait on the queue."""
        self.keys.queue(job_name)
        await self.redis.sadd(self.keys.paused, job_name)

    async def unpause(self, job_name: str) -> None:
        """Let pools fetch ``job_name`` again (idle pools are woken at once)."""
        await self.redis.srem(self.keys.paused, job_name)
        await self.redis.publish(self.keys.wake_channel, "unpause")

    async def paused(self) -> set[str]:
        members = await self.redis.smembers(self.keys.paused)
        return {_text(m) for m in members}

    async def queue_sizes(self) -> dict[str, dict[str, int]]:
        """Per job name: jobs queued, scheduled, retrying and running now."""
        names = sorted(_text(m) for m in await self.redis.smembers(self.keys.names))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(self.keys.queue(name))
                pipe.zcard(self.keys.scheduled(name))
                pipe.zcard(self.keys.retry(name))
                pipe.hget(self.keys.running, name)
            raw = await pipe.execute()
        out: dict[str, dict[str, int]] = {}
        for i, name in enumerate(names):
            q, s, r, running = raw[4 * i : 4 * i + 4]
            out[name] = {"queued": q, "scheduled": s, "retry": r, "running": int(running or 0)}
        return out

    async def dead_count(self) -> int:
        return int(await self.redis.zcard(self.keys.dead))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
