"""Isolation of suspects (jobs taken back from dead pools ``max_recoveries - 1`` times, see
docs/reliability.md, "Neighbours of a poison job") holds for batch job names too: a pool runs at
most one suspect at a time, in a batch or not. A batch fetch took every suspect waiting, so one
poison job in a batch took the same neighbours down with it at each crash until all were buried.
Suspects are planted as their recovery counts (the reaper's), so the runs are exact."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, WorkerPool
from errands.store.keys import Keys
from errands.store.records import FetchResult
from errands.store.scripts import Scripts
from tests.support.client_env import until
from tests.support.invariants import assert_invariants

WAIT = timedelta(milliseconds=50)


def make_pool(redis_url: str, namespace: str) -> WorkerPool:
    # max_recoveries=2: a job taken back once from a dead pool is a suspect
    return WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=4, shutdown_grace=5.0, max_recoveries=2
    )


class Fetches:
    """Records the fetches that may take jobs (of every pool of the test: Scripts.fetch patched):
    the name first in their order, and the suspects they told fetch.lua the pool runs. With
    ``gate``: the first two wait for each other (both on their way at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gate: bool = False) -> None:
        self.told: list[tuple[str, int]] = []
        self.taken: list[int] = []  # suspects each of the first two took
        self._arrived: list[asyncio.Future[None]] = []
        real = Scripts.fetch

        async def fetch(
            scripts: Scripts, pool_id: str, now_ms: int, asked: int, order: Any, *a: Any, **kw: Any
        ) -> FetchResult | None:
            if not (asked and order):
                return await real(scripts, pool_id, now_ms, asked, order, *a, **kw)
            self.told.append((order[0][0], kw["suspects"]))
            first_two = gate and len(self._arrived) < 2
            if first_two:
                self._arrived.append(asyncio.get_running_loop().create_future())
                if len(self._arrived) == 2:
                    for arrived in self._arrived:
                        arrived.set_result(None)
                async with asyncio.timeout(5):  # (fails the test's asserts, not hangs)
                    await self._arrived[-1]
            got = await real(scripts, pool_id, now_ms, asked, order, *a, **kw)
            if first_two:
                self.taken.append(sum(item.suspect for item in got or []))
            return got

        monkeypatch.setattr(Scripts, "fetch", fetch)

    def of(self, name: str) -> int:
        return sum(first == name for first, _ in self.told)


async def _plant_suspects(redis: Redis, namespace: str, ids: list[str]) -> None:
    await redis.hset(Keys(namespace).recoveries, mapping=dict.fromkeys(ids, 1))  # type: ignore[arg-type]


async def test_a_batch_takes_at_most_one_suspect(
    redis_url: str, namespace: str, redis: Redis
) -> None:
    pool = make_pool(redis_url, namespace)
    batches: list[list[str]] = []

    @pool.batch_job("index", max_size=10, max_wait=WAIT)
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append([j.id for j in jobs])
        return BatchOutcome()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("index", {}) for _ in range(6)])
    ids = [j.id for j in jobs]
    suspects = set(ids[::2])
    await _plant_suspects(redis, namespace, sorted(suspects))
    await pool.drain(timeout=20)
    assert sorted(i for batch in batches for i in batch) == sorted(ids)
    counts = [len(suspects & set(batch)) for batch in batches]
    assert max(counts) == 1 and sum(counts) == 3
    assert pool.worker is None or not pool.worker._suspects
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_a_batch_takes_no_suspect_while_the_pool_runs_one(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suspect of a plain job name runs: the batch fetch leaves the batch name's suspect
    queued, takes the others, and takes it once the first suspect ended."""
    fetches = Fetches(monkeypatch)
    pool = make_pool(redis_url, namespace)
    batches: list[list[str]] = []
    release = asyncio.Event()
    holding: list[str] = []

    @pool.job("hold")
    async def hold(job: Job) -> None:
        holding.append(job.id)
        await release.wait()

    @pool.batch_job("index", max_size=10, max_wait=WAIT)
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append([j.id for j in jobs])
        return BatchOutcome()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        held = await enqueuer.enqueue("hold")
        assert held is not None
        await _plant_suspects(redis, namespace, [held.id])
        ids = [f"{namespace}-index-{i}" for i in range(3)]
        await _plant_suspects(redis, namespace, ids[:1])
        async with pool:
            await until(lambda: holding == [held.id], 10)
            await enqueuer.enqueue_many([("index", {}, {"job_id": i}) for i in ids])
            await until(lambda: len(batches) == 1, 10)  # (without the suspect)
            assert sorted(batches[0]) == sorted(ids[1:])
            # the batch loop fetches again at each poll (max_wait / 4): still not taken
            seen = fetches.of("index")
            await until(lambda: fetches.of("index") >= seen + 3, 10)
            assert len(batches) == 1 and holding == [held.id]
            assert await redis.zrange(Keys(namespace).queue("index"), 0, -1) == [ids[0].encode()]
            release.set()
            await until(lambda: len(batches) == 2, 10)
            assert batches[1] == [ids[0]]
            await pool.drain(timeout=10)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_the_fetch_loop_takes_no_suspect_while_a_batch_holds_one(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way: a batch running a suspect keeps the fetch loop from taking one."""
    fetches = Fetches(monkeypatch)
    pool = make_pool(redis_url, namespace)
    release = asyncio.Event()
    batches: list[list[str]] = []
    ran: list[str] = []

    @pool.job("plain")
    async def plain(job: Job) -> None:
        ran.append(job.id)

    @pool.batch_job("index", max_size=10, max_wait=WAIT)
    async def index(jobs: list[Job]) -> BatchOutcome:
        batches.append([j.id for j in jobs])
        await release.wait()
        return BatchOutcome()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        ids = [f"{namespace}-index", f"{namespace}-plain-0", f"{namespace}-plain-1"]
        await _plant_suspects(redis, namespace, ids[:2])
        async with pool:
            await enqueuer.enqueue("index", job_id=ids[0])
            await until(lambda: batches == [[ids[0]]], 10)
            await enqueuer.enqueue_many([("plain", {}, {"job_id": i}) for i in ids[1:]])
            await until(lambda: ran == [ids[2]], 10)  # (not the suspect)
            seen = fetches.of("plain")
            await until(lambda: fetches.of("plain") >= seen + 2, 10)
            assert ran == [ids[2]]
            release.set()
            await until(lambda: ran == [ids[2], ids[1]], 10)
            await pool.drain(timeout=10)
    await assert_invariants(redis, namespace, drained=True, stopped=True)


async def test_of_two_fetches_on_their_way_at_once_one_may_take_a_suspect(
    redis_url: str, namespace: str, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch loop's and a batch loop's fetch, both sent before either is answered: one is
    told the pool runs a suspect (told 0 both, each took one: two suspects ran at once)."""
    fetches = Fetches(monkeypatch, gate=True)
    pool = make_pool(redis_url, namespace)
    ran: list[str] = []

    @pool.job("plain")
    async def plain(job: Job) -> None:
        ran.append(job.id)

    @pool.batch_job("index", max_size=10, max_wait=timedelta(milliseconds=1))
    async def index(jobs: list[Job]) -> BatchOutcome:
        ran.extend(j.id for j in jobs)
        return BatchOutcome()

    ids = [f"{namespace}-plain", f"{namespace}-index"]
    await _plant_suspects(redis, namespace, ids)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue("plain", job_id=ids[0])
        await enqueuer.enqueue("index", job_id=ids[1])
    async with pool:
        await until(lambda: len(fetches.taken) == 2, 10)
        assert sorted(told for _, told in fetches.told[:2]) == [0, 1]
        assert sum(fetches.taken) == 1
        await pool.drain(timeout=10)
    assert sorted(ran) == sorted(ids)
    await assert_invariants(redis, namespace, drained=True, stopped=True)
