"""Lookahead: with short jobs a pool fetches up to `concurrency` jobs ahead of its free slots and
starts them the moment a slot frees; they are held like running jobs and never lost."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.clock import SystemClock
from errands.store.hotcalls import WorkerScripts
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from errands.worker.acker import Acker


async def _until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def test_jobs_fetched_ahead_go_back_on_their_queue_at_stop(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    gate = asyncio.Event()
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, shutdown_grace=0.1)

    @pool.job("work")
    async def work(job: Job, block: bool) -> None:
        if block:
            await gate.wait()

    enqueuer = Enqueuer(redis, namespace=namespace)
    await enqueuer.enqueue_many([("work", {"block": False}) for _ in range(6)])
    async with pool:
        await pool.drain(timeout=5)  # short runs: the lookahead switches on
        worker = pool.worker
        assert worker is not None and worker.lookahead == 2
        await enqueuer.enqueue_many([("work", {"block": True}) for _ in range(10)])

        async def held_four() -> bool:
            return len(worker.buffer) == 2 and await redis.zcard(keys.in_progress(pool.id)) == 4

        await _until(held_four)
        assert worker.busy == 2
        pool_id = pool.id
    # stopped: 2 running jobs cancelled and requeued, 2 fetched ahead requeued, none lost
    assert await redis.zcard(keys.queue("work")) == 10
    assert await redis.zcard(keys.in_progress(pool_id)) == 0
    assert await redis.hget(keys.running, "work") == b"0"
    assert await redis.hget(keys.stats, "failed") is None
    gate.set()
    again = WorkerPool(redis, namespace=namespace, concurrency=4)
    seen: list[str] = []

    @again.job("work")
    async def work2(job: Job, block: bool) -> None:
        seen.append(job.id)

    await again.drain(timeout=5)
    assert len(seen) == 10 and len(set(seen)) == 10


async def test_no_lookahead_for_long_jobs_but_for_capped_job_types(
    redis: Redis, namespace: str
) -> None:
    pool = WorkerPool(redis, namespace=namespace, concurrency=4)

    @pool.job("quick")
    async def quick(job: Job) -> None: ...

    capped = WorkerPool(redis, namespace=namespace + "c", concurrency=4)

    @capped.job("quick")
    async def quick2(job: Job) -> None: ...

    @capped.job("limited", max_concurrency=1)
    async def limited(job: Job) -> None: ...

    async with pool, capped:
        worker, capped_worker = pool.worker, capped.worker
        assert worker is not None and capped_worker is not None
        assert worker.lookahead == 0  # nothing measured yet
        worker._observe(0.001)
        assert worker.lookahead == 4
        for _ in range(10):
            worker._observe(2.0)  # long jobs: a job fetched ahead could wait seconds
        assert worker.lookahead == 0
        capped_worker._observe(0.001)
        # a capped job type too: a job fetched ahead holds its slot (tests/limits/test_ahead.py)
        assert capped_worker.lookahead == 4


async def test_a_job_fetched_ahead_does_not_wait_behind_a_long_job(
    redis: Redis, namespace: str
) -> None:
    """Issue 12 (defect 9): with short jobs so far, a pool fetched the next job ahead; the job
    it was running turned out long, and the one fetched ahead waited for it while another pool
    idled. It now goes back to its queue, at its place, after BUFFER_MAX_WAIT."""
    log: dict[str, tuple[str, float, float]] = {}

    def make(tag: str) -> WorkerPool:
        pool = WorkerPool(redis, namespace=namespace, concurrency=1)

        @pool.job("work")
        async def work(job: Job, seconds: float = 0.0, name: str = "") -> None:
            began = asyncio.get_running_loop().time()
            await asyncio.sleep(seconds)
            log[name or job.id] = (tag, began, asyncio.get_running_loop().time())

        return pool

    enqueuer = Enqueuer(redis, namespace=namespace)
    first, second = make("first"), make("second")
    await enqueuer.enqueue_many([("work", {}) for _ in range(6)])
    async with first:
        await first.drain(timeout=5)  # short runs: the lookahead switches on
        worker = first.worker
        assert worker is not None and worker.lookahead == 1
        await enqueuer.enqueue("work", {"seconds": 1.5, "name": "long"})
        await enqueuer.enqueue("work", {"name": "short"})
        await _until(lambda: asyncio.sleep(0, len(worker.buffer) == 1))
        async with second:
            await _until(lambda: asyncio.sleep(0, "long" in log), timeout=5)
    assert log["short"][0] == "second"
    assert log["short"][1] < log["long"][2]  # it ran while the long job still ran


async def test_a_slot_freed_gives_back_a_held_job_past_its_wait(
    redis: Redis, namespace: str
) -> None:
    """A slot freed started the first job held ahead whatever its wait: one past it (a rated
    type's 20 ms) started late while the fetch loop, which gives such jobs back, awaited a
    fetch. Now those past their wait go back and the first one still within it starts."""
    pool = WorkerPool(redis, namespace=namespace, concurrency=1)

    @pool.job("work")
    async def work(job: Job) -> None: ...

    async with pool:
        worker = pool.worker
        assert worker is not None
        started: list[object] = []
        given: list[object] = []
        worker._start = lambda name, item: started.append(item)  # type: ignore[method-assign,assignment,misc]
        worker._give_back = lambda name, item: given.append(item)  # type: ignore[method-assign,assignment,misc]
        now = time.monotonic()
        old, fresh = object(), object()
        worker.buffer.extend([("work", old, now - 1), ("work", fresh, now + 60)])  # type: ignore[list-item]
        done = asyncio.ensure_future(asyncio.sleep(0))
        worker.tasks.add(done)  # a job task of the pool's, ended (in a slot)
        await done
        worker._task_done(done)
        assert (started, given) == ([fresh], [old])


async def test_a_held_job_starts_in_the_turn_its_slot_frees(redis: Redis, namespace: str) -> None:
    """A job held ahead starts as the job before it in its slot returns: its first step runs in
    the next turn of the event loop (it waited a turn more for the ended task's callback)."""
    loop = asyncio.get_running_loop()
    turns, ticking = 0, True

    def tick() -> None:  # counts the turns of the event loop
        nonlocal turns
        turns += 1
        if ticking:
            loop.call_soon(tick)

    pool = WorkerPool(redis, namespace=namespace, concurrency=1)
    seen: list[tuple[int, int, int]] = []  # (job, turn it started, turn its handler returned)

    @pool.job("work")
    async def work(job: Job, i: int) -> None:
        started = turns
        await asyncio.sleep(0.02)  # short: the lookahead holds the next job meanwhile
        seen.append((i, started, turns))

    await Enqueuer(redis, namespace=namespace).enqueue_many([("work", {"i": i}) for i in range(8)])
    tick()
    try:
        await pool.drain(timeout=10)
    finally:
        ticking = False
    assert [i for i, _s, _e in seen] == list(range(8))
    gaps = [nxt[1] - prev[2] for prev, nxt in itertools.pairwise(seen)]
    assert min(gaps) == 1 and gaps.count(1) >= 4, gaps  # (2 before)


async def test_a_job_started_in_a_freed_slot_does_not_see_the_context_of_its_predecessor(
    redis: Redis, namespace: str
) -> None:
    """Each job task starts from the pool's context, also one started by the task of the job
    that ended in its slot: what a handler set in its context stays with its job."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("left_by_a_handler")
    pool = WorkerPool(redis, namespace=namespace, concurrency=2)
    found: list[str | None] = []

    @pool.job("work")
    async def work(job: Job) -> None:
        found.append(var.get(None))
        var.set(job.id)
        await asyncio.sleep(0.005)

    await Enqueuer(redis, namespace=namespace).enqueue_many([("work", {}) for _ in range(20)])
    await pool.drain(timeout=10)
    assert found == [None] * 20


async def test_the_ack_flusher_is_woken_a_turn_after_the_ack(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of short jobs ends in one turn of the event loop; the jobs started in their slots
    then run to their first await before the flusher builds its call (it went first)."""
    order: list[str] = []
    report = Scripts.ack_report

    async def noted(self: Scripts, *args: Any) -> Any:
        order.append("ack")
        return await report(self, *args)

    monkeypatch.setattr(Scripts, "ack_report", noted)
    acker = Acker(Scripts(redis, Keys(namespace)), "p1", SystemClock(), history=False)
    acker.start()
    try:
        acker.add(Acked("j1", "work", b"1", 1, 60_000, 1, "t1"), False)
        asyncio.get_running_loop().call_soon(order.append, "started")  # a job started then
        async with asyncio.timeout(5):
            while not acker.idle or not order:
                await asyncio.sleep(0.01)
    finally:
        await acker.close()
    assert order == ["started", "ack"] and acker.refused == 1  # (j1 was not in progress)


async def test_jobs_started_from_the_buffer_run_before_the_fetch_that_refills_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs end in one turn and the two held ahead start in their slots: both reach their
    first await before the fetch loop builds the fetch that refills the buffer (it went between
    them: the second job's timer started after the fetch's work)."""
    order: list[str] = []
    fetch = WorkerScripts.fetch

    async def noted(self: WorkerScripts, *args: Any, **kwargs: Any) -> Any:
        order.append("fetch")
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(WorkerScripts, "fetch", noted)
    gate = asyncio.Event()
    pool = WorkerPool(redis, namespace=namespace, concurrency=2)

    @pool.job("work")
    async def work(job: Job, kind: str) -> None:
        if kind == "gated":
            await gate.wait()
        elif kind == "held":
            order.append("started")

    enqueuer = Enqueuer(redis, namespace=namespace)
    async with pool:
        worker = pool.worker
        assert worker is not None
        await enqueuer.enqueue_many([("work", {"kind": "quick"}) for _ in range(4)])
        await _until(lambda: _true(worker.processed == 4))  # the lookahead switches on
        kinds = ["gated", "gated", "held", "held"]
        await enqueuer.enqueue_many([("work", {"kind": k}) for k in kinds])
        await _until(lambda: _true(len(worker.buffer) == 2), timeout=0.15)
        order.clear()
        gate.set()
        await _until(lambda: _true(worker.processed == 8 and "fetch" in order))
    assert order[:3] == ["started", "started", "fetch"], order


async def _true(value: bool) -> bool:
    return value
