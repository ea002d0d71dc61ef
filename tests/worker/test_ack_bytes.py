"""Acknowledgements bounded in bytes per script call, and results bounded per job.

The acker sends every pending ack in one batch, and results had no size limit: 32 jobs
returning 100 MB each made one ack call of 3.2 GB, which Redis refuses by closing the connection
(its client-query-buffer-limit is 1 GiB), at every re-send, holding the acks of every other job
of the pool with it. A batch now goes in calls of at most ACK_CALL_BYTES (16 MiB) of results and
envelopes, a larger job alone (store/ackcall.py ack_slices, as the enqueue calls' bulk.py
call_slices). A single result over its type's ``max_result`` (512 MiB by default: Redis refuses
a value over its proto-max-bulk-len, 512 MiB by default, by closing the connection) is never
sent: the job fails for good with a clear message (worker/results.py), tested with a small
``max_result``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import BatchOutcome, Enqueuer, Job, JobFailedError, RegistrationError, WorkerPool
from errands.store.ackcall import ACK_MAX, ack_slices
from errands.store.hotcalls import WorkerScripts
from errands.store.keys import Keys
from errands.store.records import Acked
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

POOL = "p1"
MIB = 1 << 20


def _ms() -> int:
    return int(time.time() * 1000)


def _acked(job_id: str, result: bytes, **extras: bytes) -> Acked:
    return Acked(job_id, "walk", result, 0, 60_000, 1, "t", **extras)


def test_the_slices_of_a_batch() -> None:
    small = [_acked(f"j{i}", b"null") for i in range(32)]
    assert ack_slices(small) == [(0, 32)]
    assert ack_slices([]) == []
    many = [_acked(f"j{i}", b"1") for i in range(ACK_MAX + 1)]
    assert ack_slices(many) == [(0, ACK_MAX), (ACK_MAX, ACK_MAX + 1)]
    # 100 bytes a call: 60 + 30 fit, 60 does not fit after them; 150 alone; 10 + 40 fit
    sized = [_acked(f"j{i}", b"x" * n) for i, n in enumerate([60, 30, 60, 150, 10, 40])]
    assert ack_slices(sized, max_bytes=100) == [(0, 2), (2, 3), (3, 4), (4, 6)]
    assert ack_slices(sized[3:4], max_bytes=100) == [(0, 1)]  # one too large: alone
    # the envelopes given for the records and the history count too
    extras = [_acked("a", b"1", envelope_json=b"e" * 60), _acked("b", b"1", history_json=b"h" * 60)]
    assert ack_slices(extras, max_bytes=100) == [(0, 1), (1, 2)]
    assert ack_slices(extras, max_bytes=200) == [(0, 2)]


@pytest.mark.parametrize("hot", [False, True])
async def test_a_batch_of_large_results_goes_in_calls_of_16_mib(
    redis: Redis, namespace: str, hot: bool
) -> None:
    """Three results of 6 MiB (18 MiB in all): two calls, each job acknowledged with its own
    result. Before, one call of 18 MiB (and of 3.2 GB for 32 results of 100 MB)."""
    keys = Keys(namespace)
    scripts = WorkerScripts(redis, keys, functions=False) if hot else Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(3):
            await enq.enqueue("walk", {}, job_id=f"big{i}")
    fetched = await scripts.fetch(POOL, _ms(), 3, [("walk", 0)]) or []
    assert len(fetched) == 3
    text = {f.id: f.id[-1] * (6 * MIB - 2) for f in fetched}  # (6 MiB of JSON each)
    done = [Acked(f.id, "walk", f'"{text[f.id]}"'.encode(), 0, 60_000, 1, f.token) for f in fetched]
    calls: list[int] = []
    real = scripts._ack_call

    async def counted(pool_id: str, chunk: Any, *args: Any) -> Any:
        calls.append(sum(len(a.result) for a in chunk))
        return await real(pool_id, chunk, *args)

    scripts._ack_call = counted  # type: ignore[method-assign]
    report = await scripts.ack_report(POOL, done, False, _ms(), True)
    assert report.refused == [] and report.unfit == []
    assert calls == [12 * MIB, 6 * MIB]  # (16 MiB a call at most)
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for f in fetched:
            assert await enq.result(f.id, timeout=0) == text[f.id]
    await assert_invariants(redis, namespace)
    if hot:
        await scripts.aclose()


async def test_a_result_over_max_result_fails_its_job_for_good(
    redis: Redis, namespace: str
) -> None:
    pool = WorkerPool(redis, namespace=namespace)

    @pool.job("big", max_result=100, max_fails=3)
    async def big(n: int) -> str:
        return "x" * n

    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        over = await enq.enqueue("big", {"n": 99})  # 101 bytes of JSON
        fits = await enq.enqueue("big", {"n": 98})  # 100 bytes
        assert over is not None and fits is not None
        await pool.drain(timeout=10)
        assert await fits.result(timeout=0) == "x" * 98
        with pytest.raises(JobFailedError) as info:
            await over.result(timeout=0)
    assert "NonRetryableError: the result is 101 bytes of JSON, over max_result=100 bytes of " in (
        info.value.error
    )
    assert await redis.zscore(Keys(namespace).dead, over.id) is not None  # (not retried)
    await assert_invariants(redis, namespace, stopped=True)


async def test_a_batch_job_over_max_result_fails_alone(redis: Redis, namespace: str) -> None:
    pool = WorkerPool(redis, namespace=namespace)

    @pool.batch_job("b", max_size=3, max_wait=0.01, max_result=100, max_fails=3)
    async def b(jobs: list[Job]) -> BatchOutcome:
        return BatchOutcome(results={j.id: "x" * int(j.args["n"]) for j in jobs})

    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for job_id, n in (("j0", 10), ("j1", 500), ("j2", 20)):
            await enq.enqueue("b", {"n": n}, job_id=job_id)
        await pool.drain(timeout=10)
        assert await enq.result("j0", timeout=0) == "x" * 10
        assert await enq.result("j2", timeout=0) == "x" * 20
        with pytest.raises(JobFailedError, match="over max_result=100 bytes"):
            await enq.result("j1", timeout=0)
    await assert_invariants(redis, namespace, stopped=True)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "100"])
def test_max_result_is_checked_at_registration(bad: object) -> None:
    pool = WorkerPool(Redis(), namespace="n")
    with pytest.raises(RegistrationError, match="max_result"):
        pool.register("w", lambda: None, max_result=bad)
