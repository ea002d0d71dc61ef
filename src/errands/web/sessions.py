"""Server-side revocation of the sign-in sessions of token auth: ``POST /logout`` records the
session id until the cookie would have expired, so a copied or replayed cookie stops working
at once, in every process serving the dashboard (the record lives in Redis, under the
namespace, and expires with the longest session)."""

from __future__ import annotations

from ..admin.client import Client
from .security import SESSION_SECONDS

__all__ = ["Sessions"]


class Sessions:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def revoke(self, sid: str, expires: int) -> None:
        key = self.client.keys.dashboard_revoked
        now_ms = int(self.client.clock.now() * 1000)
        async with self.client.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {sid: expires * 1000})
            pipe.zremrangebyscore(key, "-inf", now_ms)
            pipe.pexpire(key, SESSION_SECONDS * 1000 + 60_000)
            await pipe.execute()

    async def revoked(self, sid: str) -> bool:
        score = await self.client.redis.zscore(self.client.keys.dashboard_revoked, sid)
        return score is not None
