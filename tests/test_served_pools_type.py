"""An enqueue while the pools' registry (``pools``) holds another type (a hand edit): the typo
check's read of it fails with a ResponseError naming the key, its type and the repair
(store/keyrepair.py), not Redis' own WRONGTYPE, which names no key."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.store.keys import Keys


async def test_an_enqueue_over_a_pools_key_of_another_type_names_it_and_its_repair(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.pools, "hand edit")
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        with pytest.raises(ResponseError) as raised:
            await enqueuer.enqueue("send_email")
    text = str(raised.value)
    assert text.startswith(f"WRONGTYPE {keys.pools} holds another type: ")
    assert f"({keys.pools} is a string; repair: DEL {keys.pools} (the pools' registry" in text
    assert await redis.exists(keys.jobs) == 0  # nothing stored
