"""Edges of a Dedup job run again by hand (lua/move.lua, docs/dedup.md "Run again by hand")
found in review: a move that queues no job itself (rescheduled for later) may still queue the
rerun left waiting for the key (its owner gone), so a seq that is not a counter fails it before
its first write, as it fails a move onto the queue; the two refusals that follow writes leave a
consistent state and are answered again writing nothing; a job of another serializer is not
moved by the Client."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Client, Enqueuer
from errands.errors import DedupKeyHeldError
from errands.store.keys import Keys
from tests.admin.test_resend import resent
from tests.admin.test_unique_rerun import run_again, unreplied
from tests.worker.test_serializer import Tagged

from .test_rerun_by_hand import MODES, ended_job, held


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


@pytest.mark.parametrize("leftover", [False, True])
async def test_a_refusal_after_the_key_went_to_a_rerun_is_answered_again_writing_nothing(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    leftover: bool,
) -> None:
    """The two refusals (-2) that follow writes: the key handed to the rerun left waiting, its
    owner gone (as an enqueue of the key would), or the moved job's own leftover record of the
    key (made by hand: no script leaves one) ended first, which hands the key to its rerun. The
    state is consistent (the rerun owns the key, queued; the job stays where it was, without a
    record), and the re-send answers -2 from the reply key, writing nothing."""
    keys = Keys(namespace)
    d = MODES["r"]
    job_id = await ended_job("dead", redis_url, namespace, enqueuer, client, d)
    owner = await enqueuer.enqueue("x", {"a": 3}, dedup=d)
    assert owner is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    rerun = await enqueuer.enqueue("x", {"a": 4}, dedup=d)
    assert rerun is not None and rerun.dedup is not None
    if leftover:  # the dead job still owns the key (by hand), the owner's records gone
        await redis.hdel(keys.dedup_of_job, owner.id)
        await redis.hset(keys.dedup, "x:k", job_id)
        await redis.hset(keys.dedup_of_job, job_id, "Fx:k")
    else:
        await redis.hdel(keys.jobs, owner.id)  # (by hand: its record stays, its job is gone)
    after_first: list[object] = []

    async def look() -> None:
        after_first.append(await unreplied(redis, namespace))

    with resent(client.scripts, "move", look) as firsts, pytest.raises(DedupKeyHeldError) as no:
        await client.retry_dead_job(job_id)
    assert firsts == [-2] and no.value.holder == rerun.id
    assert await unreplied(redis, namespace) == after_first[0]  # the re-send wrote nothing
    assert await held(redis, keys) == ({"x:k": rerun.id}, {rerun.id: "rx:k"})
    assert await redis.zscore(keys.queue("x"), rerun.id) is not None
    assert await redis.zscore(keys.dead, job_id) is not None


async def test_a_job_of_another_serializer_is_not_run_again_by_the_client(
    redis: Redis, namespace: str, client: Client
) -> None:
    """docs/dedup.md: an envelope that is no JSON object (another serializer) is a corrupt entry
    to the Client (its name, its Dedup unread): ``retry_dead_job`` and ``reschedule`` answer
    False and move nothing (``reschedule`` put a cancelled one on the queue of the name "?",
    which no pool serves: stranded, and beside its key's holder)."""
    keys = Keys(namespace)
    d = MODES["f"]
    async with Enqueuer(redis, namespace=namespace, serializer=Tagged()) as tagged:
        job = await tagged.enqueue("x", {"a": 1}, delay=60, dedup=d)
        assert job is not None
        raw = await redis.hget(keys.jobs, job.id)
        assert raw is not None and raw.startswith(b"\x01") and b'"x":"fk"' in raw
        assert await client.cancel(job.id) == "cancelled"
        holder = await tagged.enqueue("x", {"a": 2}, delay=60, dedup=d)
        assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    before = await unreplied(redis, namespace)
    assert not await client.reschedule(job.id, 0)
    assert not await client.reschedule(job.id, time.time() + 600)
    assert await unreplied(redis, namespace) == before
    assert await redis.zscore(keys.cancelled, job.id) is not None
