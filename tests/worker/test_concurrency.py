"""Concurrency limits: ``max_concurrency`` holds across pools in separate processes (the Redis
``running`` counter is the only coordination), and ``concurrency`` bounds one pool."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, RegistrationError, WorkerPool
from errands.store.keys import Keys
from tests.support.procs import Procs, eventually, max_overlap, records, running_counts, wait_ready


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def run_capped_jobs(
    procs: Procs,
    redis_url: str,
    namespace: str,
    redis: Redis,
    *,
    name: str,
    workers: int,
    jobs: int,
    seconds: float,
) -> list[dict[str, float]]:
    """Start ``workers`` worker processes (concurrency 4 each), let them race for ``jobs`` jobs
    of ``name``, stop them with SIGTERM; returns the recorded intervals."""
    started = [procs.worker("timed:pool", redis_url, namespace) for _ in range(workers)]
    await wait_ready(redis, namespace, workers)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        enqueued = await enqueuer.enqueue_many([(name, {"seconds": seconds})] * jobs)

    async def all_done() -> list[dict[str, float]] | None:
        found = await records(redis, namespace, "intervals")
        return found if len(found) >= jobs else None

    intervals = await eventually(all_done, 30, f"{jobs} {name} jobs to finish")

    async def settled() -> bool:
        counts = await running_counts(redis, namespace)
        return counts.get(name) == 0 and await redis.hget(Keys(namespace).stats, "processed") == (
            str(jobs).encode()
        )

    await eventually(settled, 5, f"running[{name}] back to 0 and {jobs} jobs acknowledged")
    assert sorted(r["id"] for r in intervals) == sorted(j.id for j in enqueued)
    for proc in started:
        proc.send(signal.SIGTERM)
    for proc in started:
        assert await proc.wait(10) == 0, proc.output()
    return intervals


async def test_max_concurrency_1_holds_across_two_processes(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    intervals = await run_capped_jobs(
        procs, redis_url, namespace, redis, name="serial", workers=2, jobs=20, seconds=0.05
    )
    spans = sorted((r["start"], r["end"]) for r in intervals)
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert s2 >= e1, f"jobs overlap: ({s1:.3f}, {e1:.3f}) and ({s2:.3f}, {e2:.3f})"
    assert max_overlap(spans) == 1
    # Which process runs which job is not promised: the pool that just finished one tends to win
    # the race for the next (it is awake when the wake-up arrives), so one may run all 20. Both
    # were registered, idle and subscribed before the jobs came (run_capped_jobs), so both raced.


async def test_max_concurrency_3_holds_across_three_processes(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    intervals = await run_capped_jobs(
        procs, redis_url, namespace, redis, name="capped", workers=3, jobs=30, seconds=0.1
    )
    overlap = max_overlap([(r["start"], r["end"]) for r in intervals])
    assert overlap <= 3, f"{overlap} capped jobs ran at once"
    assert overlap >= 2, "capped jobs never ran concurrently: the test proved nothing"


async def test_concurrency_bounds_one_pool(redis_url: str, namespace: str) -> None:
    running = 0
    most = 0
    done = 0
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=3)

    async def tracked(job: Job) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.03)
        running -= 1
        done += 1

    pool.register("a", tracked)
    pool.register("b", tracked)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        await enqueuer.enqueue_many([("a", {})] * 10 + [("b", {})] * 10)
    await pool.drain(timeout=20)
    assert done == 20
    assert most == 3, f"at most {most} jobs ran at once with concurrency=3"


@pytest.mark.parametrize("bad", [0, -1, 2.5, 1.0, True, "4", None])
def test_a_pools_concurrency_is_an_int_of_at_least_1(bad: object) -> None:
    """As ``max_concurrency``: a float (2.5 was taken, and sent as the fetch's batch size) or a
    bool is refused, naming the value."""
    assert WorkerPool.from_url("redis://localhost:1", concurrency=1).concurrency == 1
    with pytest.raises(RegistrationError, match=rf"^concurrency must be an int >= 1, got {bad!r}$"):
        WorkerPool.from_url("redis://localhost:1", concurrency=bad)  # type: ignore[arg-type]
