"""Edges of a Dedup job run again by hand (lua/move.lua, docs/dedup.md "Run again by hand")
found in review: a move that queues no job itself (rescheduled for later) may still queue the
rerun left waiting for the key (its owner gone), so a seq that is not a counter fails it before
its first write, as it fails a move onto the queue."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer
from errands.store.keys import Keys
from tests.admin.test_unique_rerun import run_again, unreplied

from .test_rerun_by_hand import MODES, ended_job


@pytest.mark.parametrize("ended", ["cancelled", "dead"])
async def test_a_move_for_later_that_would_queue_an_orphaned_rerun_checks_seq_first(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    ended: str,
) -> None:
    keys = Keys(namespace)
    d = MODES["r"]
    job_id = await ended_job(ended, redis_url, namespace, enqueuer, client, d)
    owner = await enqueuer.enqueue("x", {"a": 3}, dedup=d)
    assert owner is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    rerun = await enqueuer.enqueue("x", {"a": 4}, dedup=d)
    assert rerun is not None and rerun.dedup is not None
    assert rerun.dedup.status == "rerun_queued"
    await redis.hdel(keys.jobs, owner.id)  # (by hand: its record stays, its job is gone)
    await redis.set(keys.seq, "not a number")  # (by hand: the promotion's INCR would raise)
    before = await unreplied(redis, namespace)
    with pytest.raises(ResponseError, match="not a counter"):
        await run_again(client, job_id, "later")
    assert await unreplied(redis, namespace) == before  # nothing written: the rerun still waits
