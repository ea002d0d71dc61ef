"""An idle batch loop sleeps until a wake-up (worker/batchwait.py), ``poll_interval`` at most,
as the fetch loop of the plain names does; it looked at its queue every 50 ms (``max_wait=0``)
or every ``max_wait / 4``, and a paused name with jobs queued was fetched every 50 ms.

Here ``poll_interval`` is an hour: only a wake-up (or the batch's ``max_wait``) starts a batch in
time. The loop's sleeps are read by a spy (``_batch_sleep``, and the ``wait_event`` the loops
slept with before), not timed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.admin.client import Client
from errands.worker import batching
from errands.worker.batching import Batching
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually

HOUR = 3600.0


class Spy:
    """The batch loops' looks (``_peek`` calls), fetches and sleeps (seconds), in turn."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.looks = 0
        self.fetches = 0
        self.sleeps: list[float] = []
        peek, fetch = Batching._peek, Batching._batch_fetch
        sleep = getattr(Batching, "_batch_sleep", None)
        wait_event = batching.wait_event

        async def spy_peek(worker: Batching, *args: Any) -> Any:
            self.looks += 1
            return await peek(worker, *args)

        async def spy_fetch(worker: Batching, *args: Any) -> Any:
            self.fetches += 1
            return await fetch(worker, *args)

        async def spy_sleep(worker: Batching, wake: Any, seconds: float) -> None:
            self.sleeps.append(seconds)
            assert sleep is not None
            await sleep(worker, wake, seconds)

        async def spy_wait(event: Any, seconds: float) -> None:  # (the loops' sleep before)
            self.sleeps.append(seconds)
            await wait_event(event, seconds)

        monkeypatch.setattr(Batching, "_peek", spy_peek)
        monkeypatch.setattr(Batching, "_batch_fetch", spy_fetch)
        if sleep is not None:
            monkeypatch.setattr(Batching, "_batch_sleep", spy_sleep)
        monkeypatch.setattr(batching, "wait_event", spy_wait)

    async def asleep(self) -> bool:
        return bool(self.sleeps)


def _pool(redis: Redis, namespace: str, ran: list[list[str]], **options: Any) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=HOUR)

    @pool.batch_job("b", **options)
    async def b(jobs: list[Job]) -> None:
        ran.append([job.id for job in jobs])

    return pool


@pytest.mark.parametrize("max_wait", [0, 1])
async def test_an_idle_batch_loop_sleeps_until_an_enqueue_wakes_it(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch, max_wait: float
) -> None:
    spy = Spy(monkeypatch)
    ran: list[list[str]] = []
    async with _pool(redis, namespace, ran, max_size=1, max_wait=max_wait):
        await eventually(spy.asleep, 5, "the batch loop asleep")
        assert spy.sleeps == [HOUR] and spy.looks == 1, "an empty queue is looked at again soon"
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue("b", {}, job_id="j")

        async def started() -> bool:
            return ran == [["j"]]

        await eventually(started, 5, "the batch of the job enqueued (its wake-up)")
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_batch_fills_up_at_once_and_a_partial_one_runs_after_max_wait(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    ran: list[list[str]] = []
    async with (
        _pool(redis, namespace, ran, max_size=3, max_wait=HOUR),
        Enqueuer(redis, namespace=namespace) as enqueuer,
    ):
        await eventually(spy.asleep, 5, "the batch loop asleep")
        for n in range(3):  # (the last one's wake-up: max_size wait)
            await enqueuer.enqueue("b", {}, job_id=f"full{n}")

        async def full() -> bool:
            return len(ran) == 1

        await eventually(full, 5, "the full batch, at once (max_wait is an hour)")
        assert sorted(ran[0]) == ["full0", "full1", "full2"]
    ran.clear()
    async with (
        _pool(redis, namespace, ran, max_size=3, max_wait=0.3),
        Enqueuer(redis, namespace=namespace) as enqueuer,
    ):
        job = await enqueuer.enqueue("b", {}, job_id="partial")

        async def partial() -> bool:
            return ran == [["partial"]]

        await eventually(partial, 5, "the partial batch, after max_wait")
        assert job is not None and time.time() - job.enqueued_at >= 0.3
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_paused_batch_name_is_not_fetched_and_its_unpause_wakes_the_loop(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    ran: list[list[str]] = []
    admin = Client(redis, namespace=namespace)
    await admin.pause("b")
    async with Enqueuer(redis, namespace=namespace) as enqueuer:
        for n in range(3):
            await enqueuer.enqueue("b", {}, job_id=f"p{n}")
    async with _pool(redis, namespace, ran, max_size=10, max_wait=0):
        await eventually(spy.asleep, 5, "the batch loop asleep")
        assert spy.fetches == 0, "a paused name was fetched"
        assert spy.sleeps == [HOUR]
        await admin.unpause("b")

        async def started() -> bool:
            return len(ran) == 1

        await eventually(started, 5, "the batch once unpaused (its wake-up)")
        assert sorted(ran[0]) == ["p0", "p1", "p2"]
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_job_enqueued_between_the_empty_look_and_the_sleep_wakes_the_loop(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the loop's look finds the queue empty, a job is enqueued before the loop
    sleeps (injected right after the look's reply, once its wake-up reached the pool: a loop
    that cleared its event after the look, or marked its pool idle after reading the queue,
    sleeps an hour)."""
    ran: list[list[str]] = []
    pool = _pool(redis, namespace, ran, max_size=10, max_wait=0)
    enqueuer = Enqueuer(redis, namespace=namespace)
    peek = Batching._peek
    injected: list[str] = []

    async def racing_peek(worker: Batching, *args: Any) -> Any:
        got = await peek(worker, *args)
        if not injected:
            assert got[0] == 0, "the first look finds the queue empty"
            injected.append("j")
            await enqueuer.enqueue("b", {}, job_id="j")
            woken = getattr(worker, "_batch_wakes", ())

            async def delivered() -> bool:
                return any(w.is_set() for w in woken)

            # (none comes when the enqueue found no idle mark: left to the assert below)
            with contextlib.suppress(AssertionError):
                await eventually(delivered, 2, "the wake-up delivered")
        return got

    monkeypatch.setattr(Batching, "_peek", racing_peek)
    async with pool, enqueuer:

        async def started() -> bool:
            return ran == [["j"]]

        await eventually(started, 5, "the batch of the job enqueued after the empty look")
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_wake_up_taken_by_a_pool_going_quiet_is_passed_on(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An enqueue popped the idle mark of a pool that goes quiet (its wake-up sent to a pool
    that will not look): the quiet pool, finding its mark gone, wakes every idle pool."""
    spy = Spy(monkeypatch)
    ran: list[list[str]] = []
    pool = _pool(redis, namespace, ran, max_size=1, max_wait=0)
    async with pool:
        await eventually(spy.asleep, 5, "the batch loop asleep")
        key = pool.keys.idle_for("b")
        assert await redis.zrem(key, pool.id) == 1  # (as an enqueue's wake-up pops it)
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(pool.keys.wake_channel)
            await pool.quiet()

            async def passed_on() -> Any:
                return await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)

            message = await eventually(passed_on, 5, "a wake-up of every idle pool")
            assert message["data"] == b"batch"
        assert await redis.zscore(key, pool.id) is None
