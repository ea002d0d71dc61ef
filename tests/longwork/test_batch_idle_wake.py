"""A batch loop with ``max_wait=0`` whose queue is empty waits for the wake-up an enqueue sends
(its empty fetch marked the pool idle for the name: lib/wake.lua), as the fetch loop does, up to
``poll_interval``: it looked at its queue every 50 ms while the queue stayed empty. Here
``poll_interval`` is an hour: only the wake-up can start the job."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool
from errands.store.scripts import Scripts
from errands.worker.batching import Batching
from tests.support.invariants import assert_invariants
from tests.support.procs import eventually


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the batch loops do, in turn: "woken" (a wake-up told them), "peek" (a look at the
    queue), "fetch:<n>" (a batch fetch that got n jobs)."""
    seen: list[str] = []
    peek, fetch = Batching._peek, Scripts.fetch
    woken = getattr(Batching, "batch_woken", None)

    async def peeked(self: Batching, *args: Any) -> Any:
        seen.append("peek")
        return await peek(self, *args)

    async def fetched(self: Scripts, *args: Any, **kwargs: Any) -> Any:
        got = await fetch(self, *args, **kwargs)
        if [name for name, _cap in args[3]] == ["b"]:
            seen.append(f"fetch:{len(got or [])}")
        return got

    def told(self: Batching) -> None:
        seen.append("woken")
        if woken is not None:
            woken(self)

    monkeypatch.setattr(Batching, "_peek", peeked)
    monkeypatch.setattr(Scripts, "fetch", fetched)
    monkeypatch.setattr(Batching, "batch_woken", told, raising=False)
    return seen


async def test_an_idle_batch_loop_waits_for_the_wake_up_of_an_enqueue(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy(monkeypatch)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=3600.0)
    ran: list[str] = []

    @pool.batch_job("b", max_size=10, max_wait=0)
    async def b(jobs: list[Job]) -> None:
        ran.extend(j.id for j in jobs)

    async def marked_idle() -> bool:  # (after the wake-up of the subscription)
        return "woken" in seen and "fetch:0" in seen[seen.index("woken") :]

    async with pool:
        await eventually(marked_idle, 5, "the batch loop's empty fetch (its idle mark)")
        for _ in range(50):
            await redis.ping()
        idle = len(seen)
        for _ in range(50):  # (a loop that polls looks at its queue meanwhile)
            await redis.ping()
        assert len(seen) == idle, seen[idle:]
        async with Enqueuer(redis, namespace=namespace) as enqueuer:
            await enqueuer.enqueue("b", {}, job_id="j")

        async def done() -> bool:
            return ran == ["j"]

        await eventually(done, 5, "the job run (woken: poll_interval is an hour)")
        assert seen[idle] == "woken" and "fetch:1" in seen[idle:], seen[idle:]
    await assert_invariants(redis, namespace, stopped=True)
