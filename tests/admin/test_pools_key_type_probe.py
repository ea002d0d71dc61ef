"""Review probe of b22cff6: the pools' registry (``pools``) holding another type. The Client's
reads of it name the key and its repair, and those that only look a pool up answer without
it; ``set_limits`` still looks the served names up (a warning's hint, ``strict=False`` by
default) through ``served_names`` without the repair hint."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Concurrency
from errands.store.keys import Keys

REPAIR = "is a string; repair: DEL"


async def test_set_limits_names_the_repair_or_stores(
    client: Client, redis: Redis, namespace: str
) -> None:
    """Fails on main: ``set_limits("work", ...)`` raises ``WRONGTYPE ... pools holds another
    type: the job names the running pools serve could not be read`` with no repair, and stores
    nothing, for a lookup whose only use (strict=False) is a warning."""
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    try:
        await client.set_limits("work", [Concurrency(2)])
    except ResponseError as exc:
        assert f"({keys.pools} {REPAIR} {keys.pools}" in str(exc), str(exc)
    else:
        assert await redis.hexists(keys.runtime_limits, "work")  # type: ignore[misc]
