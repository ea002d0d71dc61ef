"""Partitions with dedup (enqueue_dedup.lua): a deduplicated job with a partition is indexed and
served in its partition's turn within the partition's limits, like any other; a request that
replaces a waiting job's envelope (debounce) gives it its partition."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.clock import to_ms
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.invariants import assert_invariants

SPEC = {"sync": "c=1"}  # one job of each partition at a time


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace) as enq:
        yield enq


async def fetch_partitions(redis: Redis, namespace: str, now: int) -> list[str]:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", now, 10, [("sync", 0)], specs=SPEC)
    parts = await redis.hmget(keys.partitions, [f.id for f in got]) if got else []
    return sorted(p.decode() if p else "-" for p in parts)


@pytest.mark.parametrize(
    "dedup",
    [Dedup, lambda k: Dedup(k, until="finished"), lambda k: Dedup(k, throttle=60)],
    ids=["until started", "until finished", "throttle"],
)
async def test_deduplicated_jobs_are_partitioned_and_limited(
    redis: Redis, namespace: str, enqueuer: Enqueuer, dedup: type[Dedup]
) -> None:
    for key, partition in (("k1", "a"), ("k2", "a"), ("k3", "b")):
        job = await enqueuer.enqueue("sync", {}, dedup=dedup(key), partition=partition)
        assert job is not None and job.dedup is not None and job.dedup.enqueued
        assert job.partition == partition
    dropped = await enqueuer.enqueue("sync", {}, dedup=dedup("k1"), partition="a")
    assert dropped is not None and dropped.dedup is not None and not dropped.dedup.enqueued
    await assert_invariants(redis, namespace)  # every queued job of a partition is indexed
    now = to_ms(enqueuer.clock.now())
    # partition a's concurrency of 1 holds its second job back; b's runs
    assert await fetch_partitions(redis, namespace, now) == ["a", "b"]
    await assert_invariants(redis, namespace)


async def test_a_debounced_request_gives_the_waiting_job_its_partition(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    busy = await enqueuer.enqueue("sync", {}, partition="a")
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k", debounce=True), partition="a")
    assert busy is not None and first is not None
    now = to_ms(enqueuer.clock.now())
    assert await fetch_partitions(redis, namespace, now) == ["a"]  # busy runs: a is full
    again = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k", debounce=True), partition="b")
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.id) == ("replaced", first.id)
    assert await redis.hget(keys.partitions, first.id) == b"b"
    await assert_invariants(redis, namespace)
    # in partition b now: it runs although a is full
    got = await Scripts(redis, keys).fetch("p", now, 10, [("sync", 0)], specs=SPEC)
    assert [f.id for f in got] == [first.id]
    # and a debounced request without a partition takes it out of its partition
    later = await enqueuer.enqueue("sync", {}, dedup=Dedup("k2", debounce=True), partition="b")
    assert later is not None
    plain = await enqueuer.enqueue("sync", {}, dedup=Dedup("k2", debounce=True))
    assert plain is not None and plain.id == later.id and plain.partition is None
    assert await redis.hget(keys.partitions, later.id) is None
    await assert_invariants(redis, namespace)


async def test_a_debounced_scheduled_job_keeps_its_partition_when_queued(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await enqueuer.enqueue(
        "sync", {}, dedup=Dedup("k", debounce=True), partition="a", delay=60
    )
    assert first is not None
    again = await enqueuer.enqueue("sync", {}, dedup=Dedup("k", debounce=True), partition="a")
    assert again is not None and again.id == first.id  # moved onto the queue
    assert await redis.zscore(keys.queue("sync"), first.id) is not None
    await assert_invariants(redis, namespace)


async def test_a_rerun_is_indexed_in_its_partition_when_the_holder_ends(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    latest = Dedup("k", until="finished", rerun_latest=True)
    holder = await enqueuer.enqueue("sync", {"v": 1}, dedup=latest, partition="a")
    assert holder is not None
    now = to_ms(enqueuer.clock.now())
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    got = await scripts.fetch("p", now, 10, [("sync", 0)], specs=SPEC)
    assert [f.id for f in got] == [holder.id]  # running: a request now waits as its rerun
    rerun = await enqueuer.enqueue("sync", {"v": 2}, dedup=latest, partition="a")
    assert rerun is not None and rerun.dedup is not None
    assert rerun.dedup.status == "rerun_queued"
    again = await enqueuer.enqueue("sync", {"v": 3}, dedup=latest, partition="b")
    assert again is not None and again.id == rerun.id  # the latest envelope, its partition
    assert await redis.hget(keys.partitions, rerun.id) == b"b"
    await assert_invariants(redis, namespace)
    done = [Acked(f.id, "sync", b"null", now, 0, 1, f.token) for f in got]
    assert await scripts.ack("p", done, False, now, False) == []
    # the holder's end queued the rerun (ack.lua, lib/dedup): indexed under partition b
    assert await redis.zscore(keys.queue("sync"), rerun.id) is not None
    await assert_invariants(redis, namespace)
    busy = await enqueuer.enqueue("sync", {}, partition="b")
    assert busy is not None
    got = await scripts.fetch("p", now, 10, [("sync", 0)], specs=SPEC)
    assert [f.id for f in got] == [rerun.id]  # b's one slot: its queued jobs one at a time
