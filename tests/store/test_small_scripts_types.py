"""checkpoint.lua and deregister.lua wrote, then raised on a key of another type: the checkpoint
was written before the read of the job's cancel request raised, and a pool left the registry
before the SREM of the idle set raised. Each is refused by name now, nothing written."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.resend import snapshot


@pytest.mark.parametrize("family", ["cancel_requests", "checkpoints"])
async def test_a_checkpoint_meeting_a_key_of_another_type_writes_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    job = await Enqueuer(redis, namespace=namespace).enqueue("walk")
    [fetched] = await scripts.fetch("p1", 0, 1, [("walk", 0)]) or []
    assert job is not None and fetched.id == job.id
    key = getattr(keys, family)
    await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    lw = LongworkScripts(scripts)
    with pytest.raises(ResponseError, match=rf"WRONGTYPE {key} holds another type: no checkpoint"):
        await lw.checkpoint(job.id, "walk", f"p1:{fetched.token}", b'{"cursor":1}')
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("family", ["idle", "idle_for"])
async def test_a_deregister_meeting_a_key_of_another_type_writes_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p1", b"{}", 60_000, mode="register")
    key = keys.idle if family == "idle" else keys.idle_for("walk")
    await redis.set(key, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match=rf"WRONGTYPE {key} holds another type: nothing"):
        await scripts.deregister("p1", ["walk"])
    assert await snapshot(redis, namespace) == before
    await redis.delete(key)  # repaired: it deregisters
    assert await scripts.deregister("p1", ["walk"])
    assert await redis.zscore(keys.pools, "p1") is None
