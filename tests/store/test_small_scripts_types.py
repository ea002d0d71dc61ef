"""Small scripts that wrote, then raised on a key of another type: checkpoint.lua wrote the
checkpoint before the read of the job's cancel request raised, deregister.lua took the pool out
of the registry before the SREM of the idle set raised, unique_gc.lua released the locks before
the one whose HDEL of unique_of_job raised, wf_trim.lua took runs out of workflows_expiry before
the ZREM of workflows raised (listed for good). Each is refused by name now, nothing written."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from errands.workflows.store import WorkflowScripts
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


async def test_a_unique_gc_meeting_a_key_of_another_type_releases_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.zadd(keys.unique_expiry, {"d1": 1, "d2": 2})
    await redis.hset(keys.unique, "d2", "j2")  # (d1: held by no job any more)
    await redis.set(keys.unique_of_job, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="holds another type: no lock released"):
        await Scripts(redis, keys).unique_gc(10)
    assert await snapshot(redis, namespace) == before


async def test_a_workflow_trim_meeting_a_key_of_another_type_trims_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.zadd(keys.workflows_expiry, {"r1": 1})
    await redis.set(keys.workflows, "x")
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="holds another type: no run trimmed"):
        await WorkflowScripts(redis, keys).trim(10)
    assert await snapshot(redis, namespace) == before
