"""Turns (``pready``) and rate waits (``pwait``) of partitions none of whose jobs is queued any
more are not left for good. Only a fetch serving partitions dropped them, and none does while no
job of the namespace has a partition (nor for a job name no pool serves): a cancel, destroy or
delete of a queued job takes its partition's turn and wait with it when the partition has no
other job indexed, and every turn and wait of the name when none has (lib/dedup.lua
dedup_unindex); the fetch that takes the last indexed job drops the waits with the turns
(lib/limits.lua lim_prune)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer
from errands.store.keys import Keys
from errands.store.scripts import Acked, Fetched, Scripts
from tests.support.invariants import assert_invariants, check_invariants

RATED = "R=1/60000"  # one start a minute per partition: the second job of one waits


async def _fetch(scripts: Scripts, batch: int, spec: str = RATED) -> list[Fetched]:
    got = await scripts.fetch("p", 1, batch, [("sms", 0)], specs={"sms": spec})
    assert got is not None
    return got


async def _ack(scripts: Scripts, taken: list[Fetched]) -> None:
    done = [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in taken]
    assert await scripts.ack("p", done, False, 1, False) == []


async def _end(client: Client, how: str, job_id: str) -> None:
    if how == "cancel":
        assert await client.cancel(job_id) == "cancelled"
    elif how == "destroy":
        assert await client.destroy(job_id)
    else:
        assert await client.delete_queued_job(job_id)


@pytest.mark.parametrize("how", ["cancel", "destroy", "delete"])
async def test_a_partition_whose_jobs_are_removed_keeps_no_turn(
    redis: Redis, namespace: str, how: str
) -> None:
    """A's only job removed while B's waits: A's turn goes, B's stays; B's removed too (the
    last partitioned job of the namespace: no fetch would serve partitions again), no turn is
    left."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        a = await enq.enqueue("sms", {}, partition="A")
        b = await enq.enqueue("sms", {}, partition="B")
    assert a is not None and b is not None
    async with Client(redis, namespace=namespace) as client:
        await _end(client, how, a.id)
        assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"B"]
        await _end(client, how, b.id)
    assert await redis.exists(keys.partitions_ready("sms")) == 0
    await assert_invariants(redis, namespace, drained=True)


async def test_a_waiting_partition_whose_jobs_are_deleted_waits_no_more(
    redis: Redis, namespace: str
) -> None:
    """A's second job waits for A's rate (pwait) and B's for B's: A's deleted, A waits no more
    while B still does; B's deleted, nothing waits. Nothing is left once the jobs taken end."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        jobs = [await enq.enqueue("sms", {}, partition=p) for p in "AABB"]
    ids = [j.id for j in jobs if j is not None]
    taken = await _fetch(scripts, 4)
    assert sorted(f.id for f in taken) == sorted([ids[0], ids[2]])
    assert sorted(await redis.zrange(keys.partitions_waiting("sms"), 0, -1)) == [b"A", b"B"]
    async with Client(redis, namespace=namespace) as client:
        assert await client.delete_queued_job(ids[1])
        assert await redis.zrange(keys.partitions_waiting("sms"), 0, -1) == [b"B"]
        assert await client.delete_queued_job(ids[3])
    assert await redis.exists(keys.partitions_waiting("sms")) == 0
    await _ack(scripts, taken)
    await assert_invariants(redis, namespace, drained=True)
    assert await redis.exists(keys.partitions_waiting("sms")) == 0


async def test_the_fetch_taking_the_last_job_drops_the_waits(redis: Redis, namespace: str) -> None:
    """A waits for its rate; its rate is lifted at run time and its jobs are taken (A back in
    turn by a new job): the fetch that takes the last indexed job drops A's wait with the turns.
    Before, A's wait stayed: once the jobs ended, no job of the namespace had a partition and
    no fetch served partitions again."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("sms", {}, partition="A")
        await enq.enqueue("sms", {}, partition="A")
        taken = await _fetch(scripts, 2)
        assert len(taken) == 1
        assert await redis.zrange(keys.partitions_waiting("sms"), 0, -1) == [b"A"]
        await enq.enqueue("sms", {}, partition="A")  # (a turn for A again)
    taken += await _fetch(scripts, 4, spec="")  # the rate lifted
    assert len(taken) == 3
    assert await redis.exists(keys.partition_queue("sms")) == 0
    assert await redis.exists(keys.partitions_waiting("sms")) == 0
    await _ack(scripts, taken)
    await assert_invariants(redis, namespace, drained=True)


async def test_the_checker_reports_turns_left_behind(redis: Redis, namespace: str) -> None:
    """What the fixes prevent, written by hand: a turn and a wait of a name with nothing
    indexed are reported; a turn of a partition without jobs beside indexed ones is legal (the
    name's next fetches drop it) and counted."""
    keys = Keys(namespace)
    await redis.zadd(keys.partitions_ready("sms"), {"A": 1})
    await redis.zadd(keys.partitions_waiting("sms"), {"B": 1})
    report = await check_invariants(redis, namespace)
    details = [v.detail for v in report.violations if v.check == "partitions"]
    assert any("partitions_ready of sms holds 1 partitions ['A']" in d for d in details), details
    assert any("partitions_waiting of sms holds 1 partitions ['B']" in d for d in details), details
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("sms", {}, partition="C")
    report = await assert_invariants(redis, namespace)
    assert report.figures["idle_turns"] == 2


async def test_a_debounced_job_pushed_back_takes_its_turn(redis: Redis, namespace: str) -> None:
    """A debounced job of partition A waits on the queue; a request of its key with a delay
    pushes it back to the scheduled set (lib/dedup.lua dedup_admit): A keeps no turn."""
    keys = Keys(namespace)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        first = await enq.enqueue("sms", {}, dedup=Dedup("k", debounce=True), partition="A")
        assert first is not None
        assert await redis.zrange(keys.partitions_ready("sms"), 0, -1) == [b"A"]
        again = await enq.enqueue(
            "sms", {}, dedup=Dedup("k", debounce=True), partition="A", delay=60
        )
    assert again is not None and again.id == first.id
    assert await redis.zscore(keys.scheduled("sms"), first.id) is not None
    assert await redis.exists(keys.partitions_ready("sms")) == 0
    await assert_invariants(redis, namespace)
