"""A job whose ``max_wait`` made a batch fetch due but that the fetch could not take (held on the
queue: here its partition's Rate is used up for an hour) has its wait counted again from that
fetch. Before, it stayed the oldest job seen, so every later look was due: each new job started
at once in a batch of its own (a fetch per look), whether it came ahead of the held job (priority
5) or behind it (priority 0). Shown: no batch while the new jobs have waited 0 s, one batch of
all of them once ``max_wait`` passed (the held job left on the queue).
Also: a job seen at the head, then taken by another pool, stops counting.
Time is the pool's clock (a FakeClock); the real sleeps only let the batch loop look (50 ms)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, Rate, WorkerPool
from errands.admin.client import Client
from errands.store.scripts import Scripts
from tests.longwork.test_batch_wait import spy_heads
from tests.support.procs import eventually


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("priority", [5, 0])
async def test_a_held_job_past_max_wait_does_not_make_every_new_job_start_alone(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, priority: int
) -> None:
    heads = spy_heads(monkeypatch)
    clock = FakeClock()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2, poll_interval=0.05)
    batches: list[list[str]] = []

    @pool.batch_job(
        "b", max_size=100, max_wait=10, limits=[Rate(1, per=timedelta(hours=1), per_partition=True)]
    )
    async def b(jobs: list[Job]) -> None:
        batches.append([j.id for j in jobs])

    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    async with pool:
        await enqueuer.enqueue("b", {}, job_id="p1", partition="P")
        await eventually(lambda: _true("p1" in heads), 10, "p1 seen")
        clock.advance(11)
        await eventually(lambda: _true(batches == [["p1"]]), 10, "p1 ran (P's rate used up)")
        await enqueuer.enqueue("b", {}, job_id="p2", partition="P")
        await eventually(lambda: _true(heads[-2:] == ["p2"] * 2), 10, "p2 seen")
        clock.advance(11)  # p2 due but held by its partition's rate for an hour
        await asyncio.sleep(0.5)
        assert batches == [["p1"]]
        for i in range(3):
            await enqueuer.enqueue("b", {}, job_id=f"u{i}", priority=priority)
            await asyncio.sleep(0.5)  # real time only; the pool's clock does not move
        assert batches == [["p1"]]  # (each u job waited 0 s of its max_wait 10 s)
        clock.advance(10)
        await eventually(lambda: _true(len(batches) == 2), 10, "one batch of the u jobs")
        assert batches[1] == ["u0", "u1", "u2"]


async def test_a_job_seen_at_the_head_then_taken_by_another_pool_stops_counting(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = spy_heads(monkeypatch)
    clock = FakeClock()
    a = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2, poll_interval=0.05)
    ran_a: list[list[str]] = []
    ran_b: list[list[str]] = []

    @a.batch_job("b", max_size=100, max_wait=10)
    async def on_a(jobs: list[Job]) -> None:
        ran_a.append([j.id for j in jobs])

    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    async with a:
        await enqueuer.enqueue("b", {}, job_id="x")
        await eventually(lambda: _true("x" in heads), 10, "x seen")
        clock.advance(6)
        b = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2, poll_interval=0.05)

        @b.batch_job("b", max_size=1, max_wait=0)
        async def on_b(jobs: list[Job]) -> None:
            ran_b.append([j.id for j in jobs])

        async with b:
            await eventually(lambda: _true(ran_b == [["x"]]), 10, "b took x")
        await enqueuer.enqueue("b", {}, job_id="y")
        n = len(heads)
        await eventually(lambda: _true(heads[n:].count("y") >= 2), 10, "y seen")
        clock.advance(5)  # y waited 5 s of 10 (x, gone, waited 11)
        await asyncio.sleep(0.5)
        assert ran_a == []
        clock.advance(5)
        await eventually(lambda: _true(ran_a == [["y"]]), 10, "y's batch at 10 s")


async def test_each_held_job_coming_to_the_head_waits_max_wait_from_the_fetch_that_passed_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs held by their partitions' rates (p2 at the head, q2 behind it): the fetch due by
    p2's wait passes both over. p2 cancelled, q2 comes to the head: its wait counts from that
    fetch too, no fetch due at once. (Only the timed job was counted again: q2, enqueued 11 s
    before, made a fetch due at once; each held job coming to the head did so.)"""
    heads = spy_heads(monkeypatch)
    fetches: list[float] = []
    fetch = Scripts.fetch

    async def counted(self: Scripts, *args: Any, **kwargs: Any) -> Any:
        if [name for name, _cap in args[3]] == ["b"]:  # (a batch fetch)
            fetches.append(clock.now())
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(Scripts, "fetch", counted)
    clock = FakeClock()
    start = clock.now()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2, poll_interval=0.05)
    batches: list[list[str]] = []

    hourly = Rate(1, per=timedelta(hours=1), per_partition=True)

    @pool.batch_job("b", max_size=100, max_wait=10, limits=[hourly])
    async def b(jobs: list[Job]) -> None:
        batches.append([j.id for j in jobs])

    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    async with pool:
        await enqueuer.enqueue("b", {}, job_id="p1", partition="P")
        await enqueuer.enqueue("b", {}, job_id="q1", partition="Q")
        await eventually(lambda: _true("p1" in heads), 10, "p1 seen")
        clock.advance(11)
        await eventually(lambda: _true(batches == [["p1", "q1"]]), 10, "P's and Q's rates used")
        await enqueuer.enqueue("b", {}, job_id="p2", partition="P", priority=1)
        await enqueuer.enqueue("b", {}, job_id="q2", partition="Q")
        await eventually(lambda: _true(heads[-2:] == ["p2"] * 2), 10, "p2 seen")
        clock.advance(11)  # p2 due; the fetch passes over p2 and q2 (held for an hour)
        await eventually(lambda: _true(start + 22 in fetches), 10, "the fetch that passes them")
        n = len(heads)
        await eventually(lambda: _true(heads[n:].count("p2") >= 2), 10, "p2 seen again")
        assert await Client(redis, namespace=namespace).cancel("p2") == "cancelled"
        n, passed = len(heads), fetches.count(start + 22)
        await eventually(lambda: _true(heads[n:].count("q2") >= 2), 10, "q2 seen at the head")
        assert fetches.count(start + 22) == passed  # (q2 waited 0 s since the fetch)
        clock.advance(10)
        await eventually(lambda: _true(start + 32 in fetches), 10, "a fetch 10 s after the pass")
        assert batches == [["p1", "q1"]]
