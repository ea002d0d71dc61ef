"""Concurrent enqueues on one event loop share script calls (store/coalescer.py), and each
caller still sees exactly its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from errands import Enqueuer, Job
from errands.errors import RedisUnavailableError
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


@pytest.fixture
async def enqueuer(redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


@pytest.fixture
async def own_enqueuer(own_redis: Redis, namespace: str) -> AsyncIterator[Enqueuer]:
    """An enqueuer on a server of the test's own: its script cache is flushed, or its clients
    killed."""
    async with Enqueuer(own_redis, namespace=namespace, strict=None) as enqueuer:
        yield enqueuer


async def test_a_lone_enqueue_is_sent_at_once(enqueuer: Enqueuer, redis: Redis) -> None:
    job = await enqueuer.enqueue("one", {"i": 1})
    assert job is not None and not job.existed
    assert enqueuer._coalescer.calls == 1
    assert await redis.hexists(enqueuer.keys.jobs, job.id)


async def test_concurrent_enqueues_share_calls_and_keep_their_order(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    ids = [f"job-{i:03d}" for i in range(300)]
    names = ["a", "b", "c"]
    jobs = await asyncio.gather(
        *(enqueuer.enqueue(names[i % 3], {"i": i}, job_id=ids[i]) for i in range(300))
    )
    assert [j.id for j in jobs if j is not None] == ids
    assert not any(j.existed for j in jobs if j is not None)
    assert enqueuer._coalescer.calls <= 10  # one alone, then the rest gathered
    keys = Keys(namespace)
    for k, name in enumerate(names):
        queued = [m.decode() for m in await redis.zrange(keys.queue(name), 0, -1)]
        assert queued == ids[k::3]  # submission order is queue order
    await assert_invariants(redis, namespace)


async def test_a_repeated_job_id_is_reported_only_to_its_caller(enqueuer: Enqueuer) -> None:
    first = await enqueuer.enqueue("a", {"i": 0}, job_id="taken")
    assert first is not None
    jobs = await asyncio.gather(
        *(enqueuer.enqueue("a", {"i": i}, job_id="taken" if i == 7 else None) for i in range(20))
    )
    assert [i for i, j in enumerate(jobs) if j is not None and j.existed] == [7]


async def test_a_script_error_reaches_only_the_failing_callers(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await redis.set(keys.queue("broken"), "not a sorted set")  # WRONGTYPE for that name only
    await enqueuer.enqueue("warm", {})  # keep the next ones gathered behind a call in flight
    names = ["good"] * 10 + ["broken"] + ["good"] * 10
    outcomes = await asyncio.gather(
        *(enqueuer.enqueue(n, {"i": i}) for i, n in enumerate(names)), return_exceptions=True
    )
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    assert failed == [10]
    assert isinstance(outcomes[10], ResponseError)
    assert await redis.zcard(keys.queue("good")) == 20
    assert await redis.hlen(keys.jobs) == 21  # warm and the good ones: no orphaned envelope


async def test_unreachable_redis_fails_every_caller_of_the_call() -> None:
    enqueuer = Enqueuer.from_url("redis://127.0.0.1:1/0", namespace="down")
    async with enqueuer:
        outcomes = await asyncio.gather(
            *(enqueuer.enqueue("a", {"i": i}) for i in range(5)), return_exceptions=True
        )
    assert all(isinstance(o, RedisUnavailableError) for o in outcomes)


async def test_a_caller_cancelled_before_its_call_stores_nothing(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    first = asyncio.ensure_future(enqueuer.enqueue("a", {"i": 0}, job_id="first"))
    await asyncio.sleep(0)  # the first call is in flight: the next one waits to be gathered
    second = asyncio.ensure_future(enqueuer.enqueue("a", {"i": 1}, job_id="second"))
    await asyncio.sleep(0)
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    third = await enqueuer.enqueue("a", {"i": 2}, job_id="third")
    assert third is not None
    stored = {m.decode() for m in await redis.hkeys(Keys(namespace).jobs)}
    assert stored == {"first", "third"}


# -- the pinned connection (store/pinned.py) ---------------------------------------------------
async def test_enqueue_survives_a_flushed_script_cache(
    own_enqueuer: Enqueuer, own_redis: Redis
) -> None:
    await own_enqueuer.enqueue("a", {"i": 0})
    await own_redis.script_flush()
    job = await own_enqueuer.enqueue("a", {"i": 1})  # NOSCRIPT on the pinned connection: loaded
    assert job is not None and await own_redis.hexists(own_enqueuer.keys.jobs, job.id)
    assert await own_enqueuer.enqueue("a", {"i": 2}) is not None


async def test_enqueue_survives_a_killed_connection(
    own_enqueuer: Enqueuer, own_redis: Redis, namespace: str
) -> None:
    await own_enqueuer.enqueue("a", {"i": 0})
    assert own_enqueuer._pinned is not None
    pinned = own_enqueuer._pinned.script._conn
    assert pinned is not None
    await own_redis.client_kill_filter(laddr=None, _id=await _client_id(own_redis, pinned))
    jobs = [await own_enqueuer.enqueue("a", {"i": i}, job_id=f"after-{i}") for i in range(3)]
    assert all(j is not None and not j.existed for j in jobs)
    assert await own_redis.zcard(Keys(namespace).queue("a")) == 4


async def _client_id(redis: Redis, conn: object) -> str:
    port = conn._writer.get_extra_info("sockname")[1]  # type: ignore[attr-defined]
    for client in await redis.client_list():
        if client["addr"].endswith(f":{port}"):
            return str(client["id"])
    raise AssertionError("the pinned connection is not among the server's clients")


async def test_closing_the_enqueuer_gives_the_connection_back(redis: Redis, namespace: str) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    await enqueuer.enqueue("a", {})
    in_use = len(redis.connection_pool._in_use_connections)
    await enqueuer.aclose()
    assert len(redis.connection_pool._in_use_connections) == in_use - 1


async def _gathered_behind_a_call(
    enqueuer: Enqueuer, jobs: list[tuple[str, str]], tasks: dict[str, asyncio.Future[Any]]
) -> list[Any]:
    """The outcomes of ``jobs`` (name, id; their tasks in ``tasks``) submitted while a first
    enqueue is in flight: sent together in the next call."""
    first = asyncio.ensure_future(enqueuer.enqueue("warm", {}))
    await asyncio.sleep(0)  # the first call is in flight: the next ones are gathered
    for name, job_id in jobs:
        tasks[job_id] = asyncio.ensure_future(enqueuer.enqueue(name, {}, job_id=job_id))
    await first
    return await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_caller_cancelled_during_a_failed_batch_does_not_fail_the_others(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """The batch fails by a script error (one job's queue of another type) while one caller
    gives up: the one-by-one re-send told the cancelled caller its error, which raised
    InvalidStateError to every caller of the batch (jobs stored reported failed)."""
    keys = Keys(namespace)
    await redis.set(keys.queue("broken"), "not a sorted set")
    coalescer, tasks = enqueuer._coalescer, dict[str, asyncio.Future[Any]]()
    real = coalescer._fast
    assert real is not None

    async def fast(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
        if len(rows) == 3:  # the gathered call is on its way: the broken job's caller gives up
            tasks["A"].cancel()
        return await real(names, rows)

    coalescer._fast = fast
    jobs = [("good", "X"), ("broken", "A"), ("good", "B")]
    outcomes = await _gathered_behind_a_call(enqueuer, jobs, tasks)
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [o.id for o in (outcomes[0], outcomes[2]) if isinstance(o, Job)] == ["X", "B"]
    assert await redis.zcard(keys.queue("good")) == 2
    assert not coalescer._busy and not coalescer._pending


async def test_redis_lost_during_the_one_by_one_re_send_fails_only_the_unstored_jobs(
    enqueuer: Enqueuer, redis: Redis, namespace: str
) -> None:
    """The batch fails by a script error and is re-sent job by job; Redis is lost for the third
    job's call (its call raises on both paths, as a fault). The first job's caller, its job
    stored by its own call, is told so then (it was told the third job's error, and may have
    retried: stored twice); the jobs from the third on fail, the fourth unsent."""
    keys = Keys(namespace)
    await redis.set(keys.queue("broken"), "not a sorted set")
    coalescer, tasks = enqueuer._coalescer, dict[str, asyncio.Future[Any]]()
    seen: dict[str, bool] = {}

    def lost_for_b(real: Any) -> Any:
        async def send(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
            if len(rows) == 1 and rows[0][2] == "B":
                done, _ = await asyncio.wait([tasks["X"]], timeout=2)  # (bounded if not)
                seen["X told first"] = bool(done)
                raise RedisConnectionError("Redis went away (a fault)")
            return await real(names, rows)  # type: ignore[no-any-return]

        return send

    coalescer._fast, coalescer._send = lost_for_b(coalescer._fast), lost_for_b(coalescer._send)
    jobs = [("good", "X"), ("broken", "A"), ("good", "B"), ("good", "C")]
    x, a, b, c = await _gathered_behind_a_call(enqueuer, jobs, tasks)
    assert isinstance(x, Job) and not x.existed and seen == {"X told first": True}
    assert isinstance(a, ResponseError)
    assert isinstance(b, RedisUnavailableError) and isinstance(c, RedisUnavailableError)
    stored = {m.decode() for m in await redis.zrange(keys.queue("good"), 0, -1)}
    assert stored == {"X"}  # (C never sent)
    assert not coalescer._busy and not coalescer._pending


async def test_callers_made_ready_with_the_reply_join_the_next_call(enqueuer: Enqueuer) -> None:
    """A web server reads the reply of the call in flight and new requests in one turn of the
    loop: the requests reach their enqueue after the reply's waiter, and go in the call that
    follows it, not in one call each."""
    later: list[asyncio.Future[Job | None]] = []

    async def first_request() -> None:
        await enqueuer.enqueue("a", {"i": 1})  # sent alone: nothing in flight
        # a request ready in the same turn as the reply (after the waiter of that reply)
        later.append(asyncio.ensure_future(enqueuer.enqueue("a", {"i": 3})))

    first = asyncio.ensure_future(first_request())
    await asyncio.sleep(0)  # its call is on the wire
    second = asyncio.ensure_future(enqueuer.enqueue("a", {"i": 2}))
    await first
    await second
    await later[0]
    assert enqueuer._coalescer.calls == 2  # the first alone, then the second and third
