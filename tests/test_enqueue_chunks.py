"""docs/enqueueing.md: ``enqueue_many`` stores its jobs by one Lua call per 5,000 jobs, and
concurrent enqueues share calls of at most 1,000 jobs; both at most 16 MiB of envelopes per call
(bounded work and memory per script call); each job once, in the order given."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from redis.asyncio import Redis

import errands.enqueuer
from errands import Enqueuer, Job, Middleware
from errands.store.bulk import MAX_CALL_BYTES, call_slices
from errands.store.coalescer import Coalescer, _Pending
from errands.store.keys import Keys


async def test_enqueue_many_sends_one_call_per_5000_jobs(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    calls: list[int] = []
    send = enqueuer._bulk.enqueue

    async def counted(chunk: Any) -> Any:
        calls.append(len(chunk[1]))  # (names, ids, envelopes, specs)
        return await send(chunk)

    monkeypatch.setattr(enqueuer._bulk, "enqueue", counted)
    jobs = await enqueuer.enqueue_many([("work", {"i": i}) for i in range(10_001)])
    assert calls == [5000, 5000, 1]
    assert [job.args["i"] for job in jobs] == list(range(10_001))
    assert not any(job.existed for job in jobs)
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs]


async def test_concurrent_enqueues_share_calls_of_at_most_1000_jobs(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/enqueueing.md: enqueues gathered while a call is on the wire are stored by the next
    script call, up to 1,000 jobs per call, in the order they were submitted."""
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    coalescer = enqueuer._coalescer
    sizes: list[int] = []
    once = coalescer._once

    async def counted(batch: Any) -> Any:
        sizes.append(len(batch))
        return await once(batch)

    monkeypatch.setattr(coalescer, "_once", counted)
    jobs = await asyncio.gather(*(enqueuer.enqueue("work", {"i": i}) for i in range(2501)))
    assert max(sizes) == 1000 and sum(sizes) == 2500, sizes  # (the first one is sent alone)
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs if job is not None]


def test_call_slices_bound_jobs_and_bytes() -> None:
    """A call takes at most max_jobs jobs and max_bytes bytes of envelopes; an envelope larger
    than max_bytes goes alone; the slices cover every job once, in order."""
    assert call_slices([]) == []
    assert call_slices([b"x"] * 5) == [(0, 5)]
    assert call_slices([b"x"] * 5, max_jobs=2) == [(0, 2), (2, 4), (4, 5)]
    assert call_slices([b"xx"] * 5, max_bytes=4) == [(0, 2), (2, 4), (4, 5)]
    assert call_slices([b"x", b"yyyyyy", b"z", b"w"], max_bytes=4) == [(0, 1), (1, 2), (2, 4)]
    assert call_slices([b"xx"] * 6, max_jobs=2, max_bytes=5) == [(0, 2), (2, 4), (4, 6)]


BIG = "x" * 1_000_000  # one job's args: 16 such envelopes fit in MAX_CALL_BYTES (16 MiB), 17 do not


async def test_enqueue_many_splits_calls_by_bytes(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 jobs of ~1 MB each: three calls (16, 16, 8), not one of 40 MB; every job stored once,
    in order."""
    assert MAX_CALL_BYTES == 16 << 20
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    calls: list[int] = []
    send = enqueuer._bulk.enqueue

    async def counted(chunk: Any) -> Any:
        calls.append(len(chunk[1]))
        return await send(chunk)

    monkeypatch.setattr(enqueuer._bulk, "enqueue", counted)
    jobs = await enqueuer.enqueue_many([("work", {"i": i, "b": BIG}) for i in range(40)])
    assert calls == [16, 16, 8]
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs]


async def test_concurrent_enqueues_share_calls_of_at_most_16_mib(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 concurrent enqueues of ~1 MB each: the one sent alone, then calls of at most 16 jobs
    (16 MiB of envelopes), each job stored once, in the order submitted."""
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    coalescer = enqueuer._coalescer
    sizes: list[int] = []
    once = coalescer._once

    async def counted(batch: Any) -> Any:
        sizes.append(len(batch))
        return await once(batch)

    monkeypatch.setattr(coalescer, "_once", counted)
    jobs = await asyncio.gather(*(enqueuer.enqueue("work", {"i": i, "b": BIG}) for i in range(40)))
    assert sizes == [16, 16, 7], sizes  # (the first one is sent alone, not through _once)
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert queued == [job.id.encode() for job in jobs if job is not None]


async def test_take_bounds_bytes_at_the_edges() -> None:
    """Coalescer._take: a job of exactly MAX_CALL_BYTES fills a call; a larger first job goes
    alone; a cancelled job is not sent (its bytes still count, so a call only gets smaller)."""
    loop = asyncio.get_running_loop()

    async def never(names: Any, rows: Any) -> Any:  # pragma: no cover - not called
        raise AssertionError

    coalescer = Coalescer(never)

    def pending(size: int) -> _Pending:
        return _Pending("work", [1, "work", "id", b"x" * size, 0, 0, ""], loop.create_future())

    exact, small, big = pending(MAX_CALL_BYTES), pending(1), pending(MAX_CALL_BYTES + 1)
    coalescer._pending = [exact, small, big, small]
    assert coalescer._take() == [exact]
    assert coalescer._take() == [small]  # (small + big pass the cap)
    assert coalescer._take() == [big]
    assert coalescer._take() == [small] and coalescer._pending == []
    gone, live = pending(MAX_CALL_BYTES), pending(1)
    gone.future.cancel()
    coalescer._pending = [gone, live]
    assert coalescer._take() == [] and coalescer._pending == [live]
    assert coalescer._take() == [live]
    assert coalescer._take() == []  # (nothing pending)


PAD = "x" * 10_000


class DropOdd(Middleware):
    """Drops the jobs of an odd ``i``."""

    async def enqueue(self, job: Job, next: Any) -> Any:
        return None if job.args["i"] % 2 else await next()


async def test_enqueue_many_keeps_order_and_existed_across_byte_slices(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls split by bytes (a cap of 3 envelopes here), some jobs dropped by a middleware and
    some ids already stored: each kept job once, in order, each ``existed`` its own (an index
    of a later call is not read as one of the first)."""
    sliced = functools.partial(call_slices, max_bytes=35_000)  # 3 envelopes of ~10 kB
    monkeypatch.setattr(errands.enqueuer, "call_slices", sliced)
    ids = [f"j{i}" for i in range(20)]
    async with Enqueuer(redis, namespace=namespace, middleware=[DropOdd()]) as enqueuer:
        await enqueuer.enqueue_many(
            [("work", {"i": i, "b": PAD}, {"job_id": ids[i]}) for i in (8, 14)]
        )
        calls = enqueuer._bulk.calls
        jobs = await enqueuer.enqueue_many(
            [("work", {"i": i, "b": PAD}, {"job_id": ids[i]}) for i in range(20)]
        )
        assert enqueuer._bulk.calls - calls == 4  # 10 jobs kept: calls of 3, 3, 3, 1
    assert [job.id for job in jobs] == ids[::2]
    assert [job.existed for job in jobs] == [job.id in ("j8", "j14") for job in jobs]
    queued = await redis.zrange(Keys(namespace).queue("work"), 0, -1)
    assert sorted(queued) == sorted(i.encode() for i in ids[::2])
