"""Batch handlers in worker processes: kill -9 in the middle of a batch loses no job (each is
given back by the reaper and acknowledged once, by the next pool); SIGTERM with the grace over
requeues each job of the batch, no failure counted; a pool frozen (SIGSTOP) in the middle of a
batch past the dead timeout has its jobs run by another pool, and once thawed acknowledges or
settles none of them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants
from tests.support.procs import Procs, eventually, records


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as p:
        yield p


async def first_batch(redis: Redis, namespace: str) -> list[str]:
    async def started() -> list[dict[str, object]]:
        return await records(redis, namespace, "batches")

    batches = await eventually(started, 30, "a batch to start")
    ids: list[str] = batches[0]["ids"]  # type: ignore[assignment]
    return ids


async def all_finished(redis: Redis, keys: Keys, ids: list[str]) -> None:
    async def finished() -> bool:
        return int(await redis.exists(*(keys.done(i) for i in ids))) == len(ids)

    await eventually(finished, 60, "every job to finish")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_a_batch_interrupted_loses_nothing_and_each_job_is_acked_once(
    procs: Procs, redis_url: str, namespace: str, redis: Redis, sig: signal.Signals
) -> None:
    keys = Keys(namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("bulk", {"n": i}) for i in range(120)])
    ids = [j.id for j in jobs]
    first = procs.worker("longwork:pool", redis_url, namespace, env={"LW_BATCH_SLEEP": "60"})
    batch = await first_batch(redis, namespace)
    assert len(batch) == 50
    first.send(sig)
    code = await first.wait(timeout=20)
    if sig == signal.SIGTERM:  # the grace (5 s) runs out: the batch goes back on its queue
        assert code == 0, first.output()[-3000:]
        waiting = {m.decode() for m in await redis.zrange(keys.queue("bulk"), 0, -1)}
        assert set(batch) <= waiting
        assert b"failed" not in await redis.hgetall(keys.stats)
    procs.worker("longwork:pool", redis_url, namespace)
    await all_finished(redis, keys, ids)
    stats = await redis.hgetall(keys.stats)
    assert int(stats[b"processed"]) == len(ids), stats  # each job acknowledged once
    assert b"failed" not in stats and b"dead" not in stats
    await assert_invariants(redis, namespace)


async def test_a_frozen_batch_is_run_elsewhere_and_its_late_acks_are_refused(
    procs: Procs, redis_url: str, namespace: str, redis: Redis
) -> None:
    keys = Keys(namespace)
    async with Enqueuer.from_url(redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many([("bulk", {"n": i}) for i in range(60)])
    ids = [j.id for j in jobs]
    # the frozen batch's sleep is over by the time it thaws: it returns, and its acks (or its
    # lost lease, whichever it sees first) come after the other pool acknowledged every job
    first = procs.worker("longwork:pool", redis_url, namespace, env={"LW_BATCH_SLEEP": "0.5"})
    batch = await first_batch(redis, namespace)
    first.send(signal.SIGSTOP)
    second = procs.worker("longwork:pool", redis_url, namespace)
    await all_finished(redis, keys, ids)
    taken = [r for r in await records(redis, namespace, "batches") if r["pid"] == second.pid]
    assert set(batch) <= {i for r in taken for i in r["ids"]}, "the frozen batch ran elsewhere"
    first.send(signal.SIGCONT)

    async def noticed() -> bool:
        return "lost its lease" in first.output()

    await eventually(noticed, 15, "the thawed pool to notice its lost lease")
    await asyncio.sleep(1.0)  # (an ack or settle of the thawed pool would have landed)
    stats = await redis.hgetall(keys.stats)
    assert int(stats[b"processed"]) == len(ids), stats  # each job acknowledged once
    assert b"failed" not in stats and b"dead" not in stats
    await assert_invariants(redis, namespace)
