"""rerun_latest: a dead or cancelled job put back to wait by hand (``retry_dead_job``,
``reschedule``, ``retry_all_dead_jobs``) while another job of its key has started, and no rerun
waits for that job, waits as its rerun, as a duplicate enqueue would (lua/move.lua,
lib/dedup.lua ``dedup_rerun_slot``): queued by the holder's end, it then holds the key, and a
later duplicate enqueue gives it its envelope. Refused (DedupKeyHeldError, nothing moved)
while the holder waits unstarted (it takes a duplicate's args itself) or a rerun waits already
(it has later args). docs/dedup.md, "Run again by hand"."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import DedupKeyHeldError
from errands.store.keys import Keys
from tests.admin.test_resend import resent
from tests.admin.test_unique_rerun import run_again, unreplied
from tests.support.invariants import assert_invariants

from .test_rerun_by_hand import CASES, ended_job, held

D = Dedup("k", until="finished", rerun_latest=True)
KEY = "x:k"


def _pool(redis_url: str, namespace: str) -> tuple[WorkerPool, list[int], asyncio.Event]:
    """A pool whose ``x`` notes its ``a`` and, for ``a`` 3 (the holder), waits for the event."""
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)
    seen: list[int] = []
    release = asyncio.Event()

    @pool.job("x")
    async def run(job: Job, a: int) -> None:
        seen.append(a)
        if a == 3:
            await release.wait()

    return pool, seen, release


async def _started_holder(enqueuer: Enqueuer, seen: list[int]) -> str:
    holder = await enqueuer.enqueue("x", {"a": 3}, dedup=D)
    assert holder is not None and holder.dedup is not None and holder.dedup.enqueued
    async with asyncio.timeout(10):
        while 3 not in seen:
            await asyncio.sleep(0.005)
    return holder.id


@pytest.mark.parametrize(("ended", "how"), CASES)
async def test_a_job_run_again_while_the_holder_runs_waits_as_its_rerun(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    ended: str,
    how: str,
) -> None:
    keys = Keys(namespace)
    job_id = await ended_job(ended, redis_url, namespace, enqueuer, client, D)
    pool, seen, release = _pool(redis_url, namespace)
    async with pool:
        holder = await _started_holder(enqueuer, seen)
        with resent(client.scripts, "move") as firsts:
            assert await run_again(client, job_id, how)  # (it was refused: DedupKeyHeldError)
        assert firsts == [1]  # (its re-send answered as the first)
        assert await held(redis, keys) == (
            {KEY: holder},
            {holder: "R" + KEY, job_id: "n" + KEY},
        )
        assert await redis.hget(keys.dedup_next, KEY) == job_id.encode()
        assert await redis.zscore(keys.dedup_reruns, job_id) is not None
        for place in (keys.queue("x"), keys.scheduled("x"), keys.dead, keys.cancelled):
            assert await redis.zscore(place, job_id) is None
        await assert_invariants(redis, namespace)
        dup = await enqueuer.enqueue("x", {"a": 5}, dedup=D)  # the latest args go to it
        assert dup is not None and dup.dedup is not None
        assert (dup.dedup.status, dup.id, dup.dedup.holder) == ("rerun_queued", job_id, holder)
        release.set()
        await pool.drain(timeout=10)
    assert seen == [3, 5]  # the holder, then the rerun once, after it
    assert await held(redis, keys) == ({}, {})
    await assert_invariants(redis, namespace, drained=True)


async def test_refused_while_a_rerun_waits_or_the_holder_waits(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    second = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    waiting = await enqueuer.enqueue("x", {"a": 3}, delay=60, dedup=D)
    assert waiting is not None
    with pytest.raises(DedupKeyHeldError) as refused:  # the holder has not started
        await client.retry_dead_job(first)
    assert refused.value.holder == waiting.id and "rerun" not in str(refused.value)
    assert await client.cancel(waiting.id) == "cancelled"
    pool, seen, release = _pool(redis_url, namespace)
    async with pool:
        holder = await _started_holder(enqueuer, seen)
        assert await client.retry_dead_job(first)
        before = await unreplied(redis, namespace)
        with pytest.raises(DedupKeyHeldError) as refused:  # a rerun waits already
            await client.reschedule(second, time.time() + 60)
        assert refused.value.holder == holder
        assert f"its rerun ({first}) waits already" in str(refused.value)
        assert await unreplied(redis, namespace) == before
        assert await redis.zscore(keys.dead, second) is not None
        release.set()
        await pool.drain(timeout=10)
    assert seen == [3, 1]
    assert await redis.zscore(keys.dead, second) is not None  # (to be run again: it is free)
    await assert_invariants(redis, namespace, drained=True)


async def test_retry_all_dead_jobs_queues_one_rerun_per_key(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    first = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    second = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    pool, seen, release = _pool(redis_url, namespace)
    async with pool:
        await _started_holder(enqueuer, seen)
        assert await client.retry_all_dead_jobs() == 1  # the oldest waits as the rerun
        assert await redis.hget(keys.dedup_next, KEY) == first.encode()
        assert [m.decode() for m in await redis.zrange(keys.dead, 0, -1)] == [second]
        await assert_invariants(redis, namespace)
        release.set()
        await pool.drain(timeout=10)
    assert seen == [3, 1]


@pytest.mark.parametrize(("holding", "waits"), [("f", True), ("r", True), ("s", False)])
async def test_by_the_mode_of_the_job_run_again_as_an_enqueue_in_it(
    redis: Redis,
    redis_url: str,
    namespace: str,
    client: Client,
    enqueuer: Enqueuer,
    holding: str,
    waits: bool,
) -> None:
    """One key, several modes (docs/dedup.md): the job run again is a rerun_latest duplicate of
    a holder started in any mode that holds until finished, as such an enqueue is; a holder of
    another mode (here until started, its key freed by its start) leaves it the key."""
    keys = Keys(namespace)
    job_id = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    mode = {"f": Dedup("k", until="finished"), "r": D, "s": Dedup("k")}[holding]
    holder = await enqueuer.enqueue("x", {"a": 3}, dedup=mode)
    assert holder is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    assert await client.retry_dead_job(job_id)
    owners, records = await held(redis, keys)
    if waits:
        assert (owners, records[job_id]) == ({KEY: holder.id}, "n" + KEY)
    else:
        assert (owners, records[job_id]) == ({KEY: job_id}, "r" + KEY)
    await assert_invariants(redis, namespace)


async def test_a_rerun_run_again_by_hand_is_shown_cancelled_and_run_again_as_a_rerun(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer
) -> None:
    """As a rerun an enqueue stored: Client.job shows it queued; cancelled, it leaves the
    key's rerun place (the holder keeps the key), and rescheduled again it takes that place."""
    keys = Keys(namespace)
    job_id = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    holder = await enqueuer.enqueue("x", {"a": 3}, dedup=D)
    assert holder is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    assert await client.retry_dead_job(job_id)
    info = await client.job(job_id)
    assert info is not None and info.status == "queued"
    assert await client.cancel(job_id) == "cancelled"
    assert await held(redis, keys) == ({KEY: holder.id}, {holder.id: "R" + KEY})
    assert await redis.hlen(keys.dedup_next) == 0 and await redis.zcard(keys.dedup_reruns) == 0
    await assert_invariants(redis, namespace)
    assert await client.reschedule(job_id, 0)
    assert await redis.hget(keys.dedup_next, KEY) == job_id.encode()
    await assert_invariants(redis, namespace)


@pytest.mark.parametrize("by", ["enqueue", "hand"])
async def test_a_rerun_removed_by_hand_leaves_its_place_to_the_next(
    redis: Redis, redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, by: str
) -> None:
    """A waiting rerun whose job was removed by hand (its records left): the next rerun, of an
    enqueue or run again by hand, takes its place and the gone one's records go (they stayed:
    a rerun of no key, in dedup_reruns for ever)."""
    keys = Keys(namespace)
    job_id = await ended_job("dead", redis_url, namespace, enqueuer, client, D)
    holder = await enqueuer.enqueue("x", {"a": 3}, dedup=D)
    assert holder is not None
    await client.scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    assert await client.scripts.fetch("ghost", int(time.time() * 1000), 1, [("x", 0)])
    gone = await enqueuer.enqueue("x", {"a": 4}, dedup=D)
    assert gone is not None and gone.dedup is not None and gone.dedup.status == "rerun_queued"
    await redis.hdel(keys.jobs, gone.id)  # (by hand)
    if by == "hand":
        assert await client.retry_dead_job(job_id)
        rerun = job_id
    else:
        again = await enqueuer.enqueue("x", {"a": 5}, dedup=D)
        assert again is not None and again.dedup is not None
        assert again.dedup.status == "rerun_queued" and again.id != gone.id
        rerun = again.id
    assert await held(redis, keys) == ({KEY: holder.id}, {holder.id: "R" + KEY, rerun: "n" + KEY})
    assert [m.decode() for m in await redis.zrange(keys.dedup_reruns, 0, -1)] == [rerun]
    await assert_invariants(redis, namespace)
