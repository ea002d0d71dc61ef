"""The eviction policy for operators: ``Client.redis_info()`` reports ``maxmemory_policy``, and
the dashboard's Redis page shows it, with a warning when it is not ``noeviction``."""

from __future__ import annotations

from redis.asyncio import Redis

import errands
from errands import Client
from tests.support.dashboard import http


async def test_the_policy_is_reported_and_an_evicting_one_is_flagged(
    own_url: str, own_redis: Redis, namespace: str
) -> None:
    async with Client.from_url(own_url, namespace=namespace) as client:
        assert (await client.redis_info())["maxmemory_policy"] == "noeviction"
        async with http(errands.dashboard(client)) as web:
            page = await web.get("/redis")
            assert page.status_code == 200
            assert "maxmemory policy" in page.text and "noeviction" in page.text
            assert 'id="evicts"' not in page.text
            await own_redis.config_set("maxmemory-policy", "allkeys-lru")
            assert (await client.redis_info())["maxmemory_policy"] == "allkeys-lru"
            assert (await web.get("/api/redis")).json()["info"]["maxmemory_policy"] == "allkeys-lru"
            page = await web.get("/redis")
            assert 'id="evicts"' in page.text and "Redis may delete job data" in page.text
            assert "<code>allkeys-lru</code>" in page.text
