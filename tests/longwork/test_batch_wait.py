"""``max_wait`` bounds the wait of the oldest job waiting for a batch: a job of a higher priority
that takes the head of the queue does not restart the wait (it did: the batch waited ``max_wait``
from the enqueue of each new head, under a trickle of such jobs much longer than ``max_wait``).
Time is the pool's clock (a FakeClock): the tests move it, sleeping only while the batch loop
looks at its queue (every 50 ms, real time)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, FakeClock, Job, WorkerPool
from errands.worker.batching import Batching
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


def spy_heads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queue heads the batch loops see, in turn, each look appended."""
    heads: list[str] = []
    peek = Batching._peek

    async def seen(self: Batching, *args: Any) -> Any:
        got = await peek(self, *args)
        heads.append(got[1])
        return got

    monkeypatch.setattr(Batching, "_peek", seen)
    return heads


async def test_a_new_head_of_a_higher_priority_does_not_restart_max_wait(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = spy_heads(monkeypatch)
    clock = FakeClock()
    start = clock.now()
    pool = WorkerPool(redis, namespace=namespace, clock=clock, concurrency=2, poll_interval=0.05)
    batches: list[tuple[float, list[str]]] = []

    @pool.batch_job("b", max_size=100, max_wait=10)
    async def b(jobs: list[Job]) -> None:
        batches.append((clock.now(), [j.id for j in jobs]))

    enqueuer = Enqueuer(redis, namespace=namespace, clock=clock)
    async with pool:
        first = await enqueuer.enqueue("b", {}, job_id="first")
        await eventually(lambda: _true("first" in heads), 10, "the first job seen at the head")
        clock.advance(6)
        await enqueuer.enqueue("b", {}, job_id="urgent", priority=5)
        await eventually(lambda: _true(heads[-2:] == ["urgent"] * 2), 10, "the new head seen")
        assert not batches  # (the first job waited 6 s of 10)
        clock.advance(5)  # the first job waited 11 s, the urgent one 5 s
        await eventually(lambda: _true(bool(batches)), 10, "a batch once the first waited 10 s")
        assert batches == [(start + 11, ["urgent", "first"])]
        assert first is not None and first.enqueued_at == start

        # the queue emptied: the next job's wait starts at its own enqueue
        await enqueuer.enqueue("b", {}, job_id="later")
        await eventually(lambda: _true(heads[-2:] == ["later"] * 2), 10, "the later job seen")
        assert len(batches) == 1
        clock.advance(10)
        await eventually(lambda: _true(len(batches) == 2), 10, "a batch of the later job")
        assert batches[1] == (start + 21, ["later"])
    await assert_invariants(redis, namespace, stopped=True)


async def _true(value: bool) -> bool:
    return value
