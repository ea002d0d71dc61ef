"""Iterable jobs in worker processes: SIGTERM stops at an item boundary with a checkpoint (the
next pool replays nothing), kill -9 resumes from the last checkpoint (replaying only the items
done since)."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from tests.support.apps import record_key
from tests.support.invariants import assert_invariants
from tests.support.procs import Procs, eventually


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def items_done(redis: Redis, namespace: str) -> list[tuple[int, int]]:
    """(pid, item) of every item run, in order."""
    raw = await redis.lrange(record_key(namespace, "items"), 0, -1)
    return [(int(p), int(i)) for p, _, i in (r.decode().partition(":") for r in raw)]


async def checkpoint(redis: Redis, keys: Keys, job_id: str) -> dict[str, object]:
    raw = await redis.hget(keys.checkpoints, job_id)
    assert raw is not None
    saved: dict[str, object] = orjson.loads(raw)
    return saved


async def run_until(redis: Redis, namespace: str, count: int) -> None:
    async def enough() -> bool:
        return len(await items_done(redis, namespace)) >= count

    await eventually(enough, 30, f"{count} items done")


async def finish(procs: Procs, redis_url: str, redis: Redis, namespace: str, job_id: str) -> int:
    """Start a second worker, wait for the job to finish; returns that worker's pid."""
    second = procs.worker("longwork:pool", redis_url, namespace)
    keys = Keys(namespace)

    async def finished() -> bool:
        return bool(await redis.exists(keys.done(job_id)))

    await eventually(finished, 60, "the job to finish")
    return second.pid


async def test_sigterm_checkpoints_and_the_next_pool_replays_nothing(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    n = 1500
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("items", {"n": n})
    assert job is not None
    first = procs.worker("longwork:pool", redis_url, namespace, env={"LW_CHECKPOINT": "60"})
    await run_until(redis, namespace, 200)
    first.send(signal.SIGTERM)
    assert await first.wait(timeout=15) == 0, first.output()[-3000:]
    done_first = await items_done(redis, namespace)
    saved = await checkpoint(redis, keys, job.id)
    assert saved["cursor"] == done_first[-1][1] == saved["done"] == len(done_first)
    assert [m.decode() for m in await redis.zrange(keys.queue("items"), 0, -1)] == [job.id]
    assert "f" not in orjson.loads(await redis.hget(keys.jobs, job.id))
    await assert_invariants(redis, namespace)

    second = await finish(procs, redis_url, redis, namespace, job.id)
    done = await items_done(redis, namespace)
    assert [i for _p, i in done] == list(range(1, n + 1)), "each item once, in order"
    assert {p for p, _i in done[len(done_first) :]} == {second}
    assert int(await redis.hget(keys.stats, "failed") or 0) == 0
    await assert_invariants(redis, namespace)


async def test_kill_9_resumes_from_the_last_checkpoint(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    n = 1500
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("items", {"n": n})
    assert job is not None
    first = procs.worker("longwork:pool", redis_url, namespace, env={"LW_CHECKPOINT": "0.2"})
    await run_until(redis, namespace, 300)
    first.send(signal.SIGKILL)
    await first.wait(timeout=10)
    done_first = await items_done(redis, namespace)
    saved = await checkpoint(redis, keys, job.id)
    cursor = int(saved["cursor"])  # type: ignore[call-overload]
    assert 0 < cursor <= done_first[-1][1]

    await finish(procs, redis_url, redis, namespace, job.id)
    done = await items_done(redis, namespace)
    after = [i for _p, i in done[len(done_first) :]]
    assert after == list(range(cursor + 1, n + 1)), "resumed right after the checkpoint"
    counts = Counter(i for _p, i in done)
    assert set(counts) == set(range(1, n + 1))
    replayed = sorted(i for i, c in counts.items() if c > 1)
    assert replayed == list(range(cursor + 1, done_first[-1][1] + 1))
    await assert_invariants(redis, namespace)


async def test_a_frozen_pool_loses_the_job_and_its_checkpoints_are_refused(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    """SIGSTOP the pool running the job past the dead timeout: another pool takes the job and
    resumes it from the checkpoint; once thawed, the frozen one (a zombie) moves no cursor and
    ends its run (its checkpoint refused, or its lost lease seen first)."""
    keys = Keys(namespace)
    n = 3000
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        job = await enqueuer.enqueue("items", {"n": n})
    assert job is not None
    env = {"LW_CHECKPOINT": "0.1"}
    first = procs.worker("longwork:pool", redis_url, namespace, env=env)
    await run_until(redis, namespace, 200)
    second = procs.worker("longwork:pool", redis_url, namespace, env=env)

    async def two_pools() -> bool:
        return await redis.zcard(keys.pools) == 2

    await eventually(two_pools, 20, "the second pool")
    first.send(signal.SIGSTOP)
    frozen_done = await items_done(redis, namespace)

    async def taken_over() -> bool:
        return any(p == second.pid for p, _i in await items_done(redis, namespace))

    await eventually(taken_over, 30, "the second pool to resume the job")
    first.send(signal.SIGCONT)

    async def finished() -> bool:
        return bool(await redis.exists(keys.done(job.id)))

    await eventually(finished, 60, "the job to finish")
    done = await items_done(redis, namespace)
    by_second = [i for p, i in done if p == second.pid]
    resumed_at = by_second[0]
    assert resumed_at <= frozen_done[-1][1] + 1, "resumed from a checkpoint the frozen run wrote"
    assert by_second == list(range(resumed_at, n + 1)), "the second pool did the rest, in order"
    thawed = [i for p, i in done[len(frozen_done) :] if p == first.pid]
    assert len(thawed) <= 2, f"the zombie ran on: {thawed}"
    log = first.output()
    assert "no longer holds the job" in log or "lost its lease" in log, log[-3000:]
    assert {i for _p, i in done} == set(range(1, n + 1))
    await assert_invariants(redis, namespace)
