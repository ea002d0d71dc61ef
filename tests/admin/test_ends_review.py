"""Review of the "ends" branch (result(timeout=0), ack slices, destroy(wait=...), a destroy
that a cancel leaves a destroy): the corners its tests did not pin down. A cancel of the
caller of ``result()`` or ``destroy(wait=...)`` propagates as CancelledError (never a
TimeoutError or RedisUnavailableError) and leaves no subscription; an ack call of a later slice
that fails (its reply lost, or its send) has the acker send the whole batch again, every job
acknowledged once, none counted refused; a cancel then a destroy of a running job is a destroy."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from errands import Client, Enqueuer
from errands.clock import SystemClock
from errands.store.connection import connect
from errands.store.keys import Keys
from errands.store.records import Acked, Settle
from errands.store.scripts import Scripts
from errands.worker.acker import Acker
from tests.faults.proxy import FaultProxy
from tests.support.invariants import assert_invariants

POOL = "p1"
MIB = 1 << 20


def _ms() -> int:
    return int(time.time() * 1000)


async def _subscribed(client: Client) -> None:
    for _ in range(500):
        if client.hub.subscribers and client.hub.subscriptions:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the wait never subscribed")


@pytest.mark.parametrize("timeout", [None, 30.0])
async def test_a_cancelled_result_wait_raises_cancelled_and_leaves(
    redis: Redis, namespace: str, timeout: float | None
) -> None:
    async with (
        Client(redis, namespace=namespace) as client,
        Enqueuer(redis, namespace=namespace, strict=None) as enq,
    ):
        job = await enq.enqueue("walk", {}, delay=3600)
        assert job is not None
        task = asyncio.create_task(client.result(job.id, timeout=timeout))
        await _subscribed(client)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.hub.subscribers == 0


async def test_a_cancelled_last_look_raises_cancelled(redis_url: str, namespace: str) -> None:
    """timeout=0 against a Redis that does not answer: the caller's cancel during the look is a
    CancelledError, not the RedisUnavailableError of the look's own bound."""
    port = urlparse(redis_url).port
    assert port is not None
    with FaultProxy(port) as proxy:
        redis = connect(proxy.url, socket_timeout=5.0)
        try:
            async with Client(redis, namespace=namespace) as client:
                await redis.ping()
                proxy.blackhole(new_connections=True)
                task = asyncio.create_task(client.result("j1", timeout=0))
                await asyncio.sleep(0.2)  # (the look is sent; no answer comes)
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        finally:
            proxy.restore()
            await redis.aclose()


async def _running(redis: Redis, namespace: str, job_id: str) -> tuple[Scripts, Any]:
    scripts = Scripts(redis, Keys(namespace))
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        await enq.enqueue("walk", {"secret": "pii"}, job_id=job_id)
    (fetched,) = await scripts.fetch(POOL, _ms(), 1, [("walk", 0)]) or []
    return scripts, fetched


async def test_destroy_wait_timed_out_or_cancelled_leaves_no_subscription(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await _running(redis, namespace, "slow-1")
    async with Client(redis, namespace=namespace) as client:
        with pytest.raises(TimeoutError, match="not dropped by its pool"):
            await client.destroy("slow-1", wait=0.1)
        assert client.hub.subscribers == 0
        assert await redis.hget(keys.cancel_requests, "slow-1") == b"destroy"  # (it stands)
        task = asyncio.create_task(client.destroy("slow-1", wait=30))
        await _subscribed(client)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.hub.subscribers == 0


@pytest.mark.parametrize("mode", ["cancelled", "dead"])
async def test_a_destroy_after_a_cancel_is_a_destroy(
    redis: Redis, namespace: str, mode: str
) -> None:
    """The reverse order of test_destroy_ending's: cancel, then destroy, before the pool acted;
    then a cancel sent again (another admin): the job ends dropped, nothing of it left."""
    keys = Keys(namespace)
    scripts, f = await _running(redis, namespace, "both-1")
    async with Client(redis, namespace=namespace) as client:
        assert await client.cancel("both-1") == "running"
        assert await redis.hget(keys.cancel_requests, "both-1") == b"cancel"
        assert await client.destroy("both-1") is True
        assert await redis.hget(keys.cancel_requests, "both-1") == b"destroy"
        assert await client.cancel("both-1") == "running"
    assert await redis.hget(keys.cancel_requests, "both-1") == b"destroy"
    now = _ms()
    target = keys.cancelled if mode == "cancelled" else keys.dead
    s = Settle(
        "both-1", "walk", mode, target, now, 1, dead_max=1000, history=True, ttl_ms=86_400_000,
        token=f.token, score_ms=now, counter=mode, error=b'{"error":"boom"}',
    )  # fmt: skip
    assert await scripts.settle_report(POOL, [s]) == [True]
    async with Client(redis, namespace=namespace) as client:
        assert await client.job("both-1") is None
        assert await client.history_job("both-1") == []
    assert await redis.zscore(keys.cancelled, "both-1") is None
    assert await redis.zscore(keys.dead, "both-1") is None


@pytest.mark.parametrize("lost", ["reply", "send"])
async def test_a_failed_later_slice_acks_every_job_once(
    redis: Redis, namespace: str, lost: str
) -> None:
    """Three results of 6 MiB go in two ack calls; the second fails (its reply lost after Redis
    ran it, or before it was sent): the acker sends the whole batch again, each call idempotent.
    Every job is acknowledged once, with its result; none counted refused; nothing left held."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for i in range(3):
            await enq.enqueue("walk", {}, job_id=f"big{i}")
    fetched = await scripts.fetch(POOL, _ms(), 3, [("walk", 0)]) or []
    assert len(fetched) == 3
    text = {f.id: f.id[-1] * (6 * MIB - 2) for f in fetched}
    real, calls = scripts._ack_call, []

    async def flaky(pool_id: str, chunk: Any, *args: Any) -> Any:
        calls.append([a.id for a in chunk])
        if len(calls) == 2:
            if lost == "reply":
                await real(pool_id, chunk, *args)
            raise RedisConnectionError("connection reset by peer (injected)")
        return await real(pool_id, chunk, *args)

    scripts._ack_call = flaky  # type: ignore[method-assign]
    acker = Acker(scripts, POOL, SystemClock(), history=True)
    for f in fetched:
        result = f'"{text[f.id]}"'.encode()
        acker.add(Acked(f.id, "walk", result, _ms(), 60_000, 1, f.token), False)
    await acker.flush()
    assert acker.idle and not acker.parked
    assert acker.refused == 0 and acker.unfit == 0
    assert len(calls) == 4  # two calls, the second failed; then both again
    assert await redis.hget(keys.stats, "processed") == b"3"
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        for f in fetched:
            assert await enq.result(f.id, timeout=0) == text[f.id]
    assert len(await redis.zrange(keys.history_of("walk"), 0, -1)) == 3  # (one entry each)
    await assert_invariants(redis, namespace)


async def test_an_end_seen_as_the_time_is_up_is_not_called_not_ended(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's `finished` event came, and the look it woke was still out when the timeout
    fired: the wait raised TimeoutError "has not ended (last event seen: finished)" for a job
    whose end it had seen. A wait that saw an end looks once more when its time is up."""
    from errands.admin import events

    scripts, f = await _running(redis, namespace, "late-1")
    real, looks, acked = events._outcome, [], []

    async def slow_once_acked(*args: Any) -> Any:
        looks.append(1)
        if acked:  # (the look the `finished` event woke: it answers past the deadline)
            await asyncio.sleep(1.0)
        return await real(*args)

    monkeypatch.setattr(events, "_outcome", slow_once_acked)
    async with Client(redis, namespace=namespace) as client:
        task = asyncio.create_task(client.result("late-1", timeout=0.5))
        while not looks:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # (the looks of its subscription answered: it waits for events)
        acked.append(1)
        done = [Acked("late-1", "walk", b"42", _ms(), 86_400_000, 1, f.token)]
        assert await scripts.ack(POOL, done, False, _ms(), True) == []
        assert await task == 42
        assert client.hub.subscribers == 0
