"""An iterable job's checkpoint refused by the server's state (over maxmemory: OOM; a master
demoted by a failover: READONLY; MISCONF, BUSY...), on a private server really put in that
state: not written, logged, tried again after ``checkpoint_every`` while the items go on, as
for an outage. It failed the run (a failure counted, the job retried with backoff, buried at
``max_fails``) for a state of the server that has nothing to do with the job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job
from errands.longwork.store import LongworkScripts
from errands.store.keys import Keys
from tests.longwork.test_iterable import make_pool
from tests.support.infra.nodes import free_port
from tests.support.invariants import assert_invariants


async def refuse_writes(redis: Redis, state: str) -> None:
    if state == "OOM":  # over maxmemory: every write refused
        await redis.config_set("maxmemory", 1)
    else:  # a master demoted by a failover (nobody there: the data stays, READONLY)
        await redis.replicaof("127.0.0.1", str(free_port()))


async def take_writes(redis: Redis, state: str) -> None:
    if state == "OOM":
        await redis.config_set("maxmemory", 0)
    else:
        await redis.replicaof("NO", "ONE")


@pytest.mark.parametrize("state", ["OOM", "READONLY"])
async def test_a_checkpoint_refused_for_the_servers_state_is_not_a_failure(
    own_url: str,
    own_redis: Redis,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    state: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="errands")
    keys = Keys(namespace)
    pool = make_pool(own_url, namespace, concurrency=1)
    seen: list[int] = []
    at = {4: (asyncio.Event(), asyncio.Event()), 7: (asyncio.Event(), asyncio.Event())}

    @pool.iterable_job("walk", checkpoint_every=0, max_fails=1)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 11):
            if i in at:  # (the test changes the server's state while the item runs)
                reached, go_on = at[i]
                reached.set()
                await go_on.wait()
            seen.append(i)
            yield i

    await own_redis.config_set("maxmemory-policy", "noeviction")
    async with Enqueuer.from_url(own_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        async with pool:
            try:
                await asyncio.wait_for(at[4][0].wait(), 10)
                await refuse_writes(own_redis, state)
                at[4][1].set()  # the checkpoints of items 4, 5 and 6 are refused
                try:
                    await asyncio.wait_for(at[7][0].wait(), 10)
                except TimeoutError:
                    raise AssertionError(
                        "the run did not go on past a refused checkpoint"
                    ) from None
            finally:
                await take_writes(own_redis, state)
            saved = orjson.loads(await own_redis.hget(keys.checkpoints, job.id))
            assert saved["cursor"] == 3, saved  # the last one written, before the refusals
            at[7][1].set()
            assert await job.result(timeout=10) == {"done": 10, "cursor": 10}
            await pool.drain(timeout=10)
    assert seen == list(range(1, 11)), "each item once"
    stats = await own_redis.hgetall(keys.stats)
    assert b"failed" not in stats and b"dead" not in stats, stats
    cls = {"OOM": "OutOfMemoryError", "READONLY": "ReadOnlyError"}
    lines = [r.getMessage() for r in caplog.records if "checkpoint not written" in r.getMessage()]
    assert lines and all(state in m or cls[state] in m for m in lines), lines
    await assert_invariants(own_redis, namespace, drained=True, stopped=True)


async def test_a_checkpoint_refused_by_naming_a_key_fails_the_run(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the server's state but the namespace's data (checkpoint.lua refusing a key of another
    type): the run fails with the refusal, the checkpoint before kept, retried as usual."""
    keys = Keys(namespace)
    write = LongworkScripts.checkpoint

    async def refused(self: LongworkScripts, *args: Any) -> str | None:
        if orjson.loads(args[3])["cursor"] < 4:
            return await write(self, *args)
        # the damage, for this call only (the settle after it finds the key repaired)
        await redis.set(keys.cancel_requests, "not a hash")
        try:
            return await write(self, *args)
        finally:
            await redis.delete(keys.cancel_requests)

    monkeypatch.setattr(LongworkScripts, "checkpoint", refused)
    pool = make_pool(redis_url, namespace, concurrency=1)
    starts: list[int | None] = []

    @pool.iterable_job("walk", checkpoint_every=0, max_fails=1)
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        starts.append(cursor)
        for i in range((cursor or 0) + 1, 11):
            yield i

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("walk")
        assert job is not None
        await pool.drain(timeout=10)
    assert starts == [None]
    assert await redis.zscore(keys.dead, job.id) is not None
    error = (await redis.hget(keys.errors, job.id) or b"").decode()
    assert "WRONGTYPE" in error and keys.cancel_requests in error, error
    saved = orjson.loads(await redis.hget(keys.checkpoints, job.id))
    assert saved["cursor"] == 3
    await assert_invariants(redis, namespace, drained=True, stopped=True)
