"""Dedup debounce (each add pushes the run back, latest args win) and rerun_latest (one running
plus at most one waiting with the latest args), with cancel/delete of the waiting rerun."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import NonRetryableError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

from .conftest import until


async def args_of(redis: Redis, keys: Keys, job_id: str) -> Any:
    raw = await redis.hget(keys.jobs, job_id)
    assert raw is not None
    return orjson.loads(raw)["a"]


def test_spec_of_debounce_and_rerun() -> None:
    assert Dedup("k", debounce=True).mode == "d"
    assert Dedup("k", until="finished", rerun_latest=True).mode == "r"
    for bad in (
        {"debounce": True, "until": "finished"},
        {"debounce": True, "throttle": 5.0},
        {"rerun_latest": True},
        {"rerun_latest": True, "until": "finished", "debounce": True},
    ):
        with pytest.raises(ValueError):
            Dedup("k", **bad)
    d = Dedup("k", until="finished", rerun_latest=True)
    assert Dedup.from_dict(d.to_dict()) == d
    assert Dedup.from_dict(Dedup("k", debounce=True).to_dict()) == Dedup("k", debounce=True)


def _deploy_pool(
    redis_url: str, namespace: str, fail: str | None = None
) -> tuple[WorkerPool, list[str], asyncio.Event, asyncio.Event]:
    """A pool whose "deploy" job notes its sha, sets ``started`` and waits for ``release`` (then
    fails for good when its sha is ``fail``)."""
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[str] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, sha: str) -> None:
        seen.append(sha)
        started.set()
        await release.wait()
        if sha == fail:
            raise NonRetryableError("broken")

    return pool, seen, started, release


async def test_debounce_replaces_args_and_pushes_the_run_back(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    d = Dedup("u7", debounce=True)
    first = await enqueuer.enqueue("notify", {"n": 1}, delay=30, dedup=d)
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    due1 = await redis.zscore(keys.scheduled("notify"), first.id)
    second = await enqueuer.enqueue("notify", {"n": 2}, delay=60, dedup=d)
    assert second is not None and second.dedup is not None
    assert (second.dedup.status, second.dedup.holder, second.id) == ("replaced", first.id, first.id)
    due2 = await redis.zscore(keys.scheduled("notify"), first.id)
    assert due1 is not None and due2 is not None and due2 > due1 + 20_000
    assert await args_of(redis, keys, first.id) == {"n": 2}
    assert await redis.hlen(keys.jobs) == 1
    # no delay: it moves onto the queue, still with the latest args
    third = await enqueuer.enqueue("notify", {"n": 3}, dedup=d)
    assert third is not None and third.dedup is not None and third.dedup.status == "replaced"
    assert await redis.zscore(keys.queue("notify"), first.id) is not None
    assert await redis.zscore(keys.scheduled("notify"), first.id) is None
    assert await args_of(redis, keys, first.id) == {"n": 3}
    await assert_invariants(redis, namespace)


async def test_a_debounced_burst_runs_once_with_the_last_args(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    seen: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("notify")
    async def notify(job: Job, n: int) -> None:
        seen.append(n)

    d = Dedup("u7", debounce=True)
    async with pool:
        outcomes = []
        for n in range(20):
            job = await enqueuer.enqueue("notify", {"n": n}, delay=3.0, dedup=d)
            assert job is not None and job.dedup is not None
            outcomes.append(job.dedup.status)
        assert outcomes == ["enqueued"] + ["replaced"] * 19
        await until(lambda: len(seen) == 1)
        await pool.drain(timeout=10)
    assert seen == [19]
    await assert_invariants(redis, namespace, drained=True)


async def test_rerun_latest_keeps_one_running_and_one_waiting(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    pool, seen, started, release = _deploy_pool(redis_url, namespace)
    d = Dedup("repo:x", until="finished", rerun_latest=True)
    first = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    assert first is not None
    # not started yet: the waiting job takes the latest args
    fresh = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
    assert fresh is not None and fresh.dedup is not None
    assert (fresh.dedup.status, fresh.id) == ("replaced", first.id)
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        reruns = []
        for sha in ("c", "d", "e"):
            job = await enqueuer.enqueue("deploy", {"sha": sha}, dedup=d)
            assert job is not None and job.dedup is not None
            assert (job.dedup.status, job.dedup.holder) == ("rerun_queued", first.id)
            reruns.append(job.id)
        assert len(set(reruns)) == 1 and reruns[0] != first.id
        assert await args_of(redis, keys, reruns[0]) == {"sha": "e"}
        assert await redis.hlen(keys.jobs) == 2
        await assert_invariants(redis, namespace)
        release.set()
        await until(lambda: len(seen) == 2)
        await pool.drain(timeout=10)
    assert seen == ["b", "e"]
    assert await redis.hlen(keys.dedup) == 0 and await redis.hlen(keys.dedup_next) == 0
    await assert_invariants(redis, namespace, drained=True)


@pytest.mark.parametrize("action", ["cancel", "destroy"])
async def test_the_waiting_rerun_can_be_cancelled_or_deleted(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client, action: str
) -> None:
    keys = Keys(namespace)
    pool, seen, started, release = _deploy_pool(redis_url, namespace)
    d = Dedup("repo:x", until="finished", rerun_latest=True)
    first = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        rerun = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
        assert rerun is not None and rerun.dedup is not None
        info = await client.job(rerun.id)
        assert info is not None and info.status == "queued"
        edited = await client.update_job(rerun.id, args={"sha": "c"}, priority=3)
        assert (edited.args, edited.priority, edited.status) == ({"sha": "c"}, 3, "queued")
        await assert_invariants(redis, namespace)
        if action == "cancel":
            assert await client.cancel(rerun.id) == "cancelled"
        else:
            assert await client.destroy(rerun.id)
        await assert_invariants(redis, namespace)
        assert first is not None
        assert await redis.hget(keys.dedup, "deploy:repo:x") == first.id.encode()
        release.set()
        await pool.drain(timeout=10)
    assert seen == ["a"]
    await assert_invariants(redis, namespace, drained=True)


async def test_the_rerun_runs_when_the_holder_dies(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    pool, seen, started, release = _deploy_pool(redis_url, namespace, fail="a")
    d = Dedup("repo:x", until="finished", rerun_latest=True)
    await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d)
        release.set()
        await until(lambda: len(seen) == 2)
        await pool.drain(timeout=10)
    assert seen == ["a", "b"]
    await assert_invariants(redis, namespace, drained=True)


async def test_a_rerun_enqueued_with_a_delay_is_queued_as_soon_as_the_holder_ends(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    """The delay counts only for the first job of a key: the rerun waits for the holder, then
    goes on its queue at once, not an hour later."""
    keys = Keys(namespace)
    pool, seen, started, release = _deploy_pool(redis_url, namespace)
    d = Dedup("repo:x", until="finished", rerun_latest=True)
    first = await enqueuer.enqueue("deploy", {"sha": "a"}, dedup=d)
    assert first is not None
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        rerun = await enqueuer.enqueue("deploy", {"sha": "b"}, dedup=d, delay=3600)
        assert rerun is not None and rerun.dedup is not None
        assert (rerun.dedup.status, rerun.dedup.holder) == ("rerun_queued", first.id)
        assert await redis.zscore(keys.dedup_reruns, rerun.id) is not None
        assert await redis.zscore(keys.scheduled("deploy"), rerun.id) is None
        release.set()
        await until(lambda: len(seen) == 2)  # within the 10 s of until(), not 3600 s
        await pool.drain(timeout=10)
    assert seen == ["a", "b"]
    assert await redis.hlen(keys.dedup) == 0
    await assert_invariants(redis, namespace, drained=True)


async def test_racing_rerun_enqueuers_leave_one_rerun(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    enqueuers = [Enqueuer.from_url(redis_url, namespace=namespace) for _ in range(20)]
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job, n: int) -> None:
        seen.append(n)
        started.set()
        await release.wait()

    d = Dedup("repo:x", until="finished", rerun_latest=True)
    try:
        await enqueuers[0].enqueue("deploy", {"n": -1}, dedup=d)
        async with pool:
            async with asyncio.timeout(10):
                await started.wait()
            jobs = await asyncio.gather(
                *(e.enqueue("deploy", {"n": i}, dedup=d) for i, e in enumerate(enqueuers))
            )
            assert {j.dedup.status for j in jobs} == {"rerun_queued"}
            assert len({j.id for j in jobs}) == 1
            last = (await args_of(redis, keys, jobs[0].id))["n"]
            release.set()
            await until(lambda: len(seen) == 2)
            await pool.drain(timeout=10)
        assert seen == [-1, last]
        await assert_invariants(redis, namespace, drained=True)
    finally:
        await asyncio.gather(*(e.aclose() for e in enqueuers))
