"""A running job destroyed (Client.destroy: cancel.lua stores a 'destroy' request, which its pool
acts on when it sees it) whose attempt ends before its pool acted on the request: a last failure
(settle.lua, mode dead) or a success (ack.lua). Found by review (hunt-long): the request was
consumed and the job stayed in the dead set with its args, error and history, or kept its
finished record and history; docs/admin.md promises every trace removed, as reap.lua does for
every ending. Every mode of settle.lua is now a drop when the request is a destroy, and ack.lua
keeps no record, history or tombstone of such a job."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer
from errands.store.keys import Keys
from errands.store.records import Acked, Settle
from errands.store.scripts import Fetched, Scripts
from tests.support.resend import snapshot

POOL = "p1"


def _ms() -> int:
    return int(time.time() * 1000)


async def _running_destroyed(redis: Redis, namespace: str, job_id: str) -> tuple[Scripts, Fetched]:
    """The job enqueued (with args), fetched by POOL and then destroyed: its pool is asked."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("walk", {"secret": "pii"}, job_id=job_id)
    (fetched,) = await scripts.fetch(POOL, _ms(), 1, [("walk", 0)]) or []
    async with Client(redis, namespace=namespace) as client:
        assert await client.destroy(job_id)
    assert await redis.hget(keys.cancel_requests, job_id) == b"destroy"
    return scripts, fetched


async def _kept_beside(redis: Redis, namespace: str, scripts: Scripts) -> Fetched:
    """Job "kept" enqueued and fetched by POOL, to be acknowledged beside a destroyed one."""
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("walk", {}, job_id="kept")
    (other,) = await scripts.fetch(POOL, _ms(), 1, [("walk", 0)]) or []
    return other


async def _traces(redis: Redis, namespace: str, job_id: str) -> list[Any]:
    """The keys of the namespace that name the job, or hold it (stats aside)."""
    found = []
    needle = job_id.encode()
    for key, (_kind, content) in (await snapshot(redis, namespace)).items():
        if key == Keys(namespace).stats.encode():
            continue
        if needle in key or needle in repr(content).encode():
            found.append((key, content))
    return found


@pytest.mark.parametrize("mode", ["dead", "retry", "drop", "cancelled"])
async def test_a_destroyed_job_that_fails_leaves_nothing(
    redis: Redis, namespace: str, mode: str
) -> None:
    keys = Keys(namespace)
    scripts, f = await _running_destroyed(redis, namespace, "gone-1")
    target = {"dead": keys.dead, "retry": keys.retry("walk"), "cancelled": keys.cancelled}
    now = _ms()
    # what Settler.failure builds for a last attempt (or a retry...), sent before the pool saw
    # the request
    s = Settle(
        "gone-1", "walk", mode, target.get(mode, keys.dead), now, 1, dead_max=1000, history=True,
        ttl_ms=86_400_000, token=f.token, score_ms=now, counter=mode, error=b'{"error":"boom"}',
    )  # fmt: skip
    assert await scripts.settle_report(POOL, [s]) == [True]
    assert await _traces(redis, namespace, "gone-1") == []
    async with Client(redis, namespace=namespace) as client:
        assert await client.job("gone-1") is None
    assert await redis.hget(keys.stats, "cancelled") == b"1"
    before = await snapshot(redis, namespace)
    assert await scripts.settle_report(POOL, [s]) == [True]  # a re-send: as the first, nothing
    assert await snapshot(redis, namespace) == before


@pytest.mark.parametrize("history", [True, False])
async def test_a_destroyed_job_that_succeeds_leaves_nothing(
    redis: Redis, namespace: str, history: bool
) -> None:
    keys = Keys(namespace)
    scripts, f = await _running_destroyed(redis, namespace, "gone-2")
    other = await _kept_beside(redis, namespace, scripts)  # (another job, acked with it)
    done = [
        Acked("gone-2", "walk", b'"result"', 0, 86_400_000, 1, f.token),
        Acked("kept", "walk", b'"result"', 0, 86_400_000, 1, other.token),
    ]
    await redis.hset(keys.listening, "*", "9999999999999")  # (a stream listens)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.events_channel)
        await pubsub.get_message(timeout=5)  # (the subscription's confirmation)
        assert await scripts.ack(POOL, done, False, _ms(), history) == []
        events = [await pubsub.get_message(timeout=5) for _ in range(2)]
    assert [orjson.loads(e["data"]) for e in events if e] == [
        {"event": "dropped", "id": "gone-2", "name": "walk", "error": None},
        {"event": "finished", "id": "kept", "name": "walk"},
    ]
    assert await _traces(redis, namespace, "gone-2") == []
    async with Client(redis, namespace=namespace) as client:
        assert await client.job("gone-2") is None
        kept = await client.job("kept")
        assert kept is not None and kept.status == "finished"
    assert await redis.get(keys.done("kept")) is not None
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.hget(keys.running, "walk") == b"0"
    # counted as settle.lua and reap.lua count a destroyed job: cancelled, not processed
    assert await redis.hmget(keys.stats, ["processed", "cancelled"]) == [b"1", b"1"]
    before = await snapshot(redis, namespace)
    assert await scripts.ack(POOL, done, False, _ms(), history) == ["gone-2"]  # a re-send
    assert await snapshot(redis, namespace) == before  # (nothing counted twice)


async def test_a_destroyed_job_the_fence_refuses_does_not_hold_the_ack_of_the_others(
    redis: Redis, namespace: str
) -> None:
    """Stats' `cancelled` not a counter: an ack of a destroyed job with a stale attempt (not
    counted) still acknowledges the other jobs of the call."""
    keys = Keys(namespace)
    scripts, _ = await _running_destroyed(redis, namespace, "gone-4")
    other = await _kept_beside(redis, namespace, scripts)
    await redis.hset(keys.stats, "cancelled", "many")
    done = [
        Acked("gone-4", "walk", b'"result"', 0, 86_400_000, 1, "stale"),
        Acked("kept", "walk", b'"result"', 0, 86_400_000, 1, other.token),
    ]
    assert await scripts.ack(POOL, done, False, _ms(), True) == ["gone-4"]
    assert await redis.hmget(keys.stats, ["processed", "cancelled"]) == [b"1", b"many"]
    assert await redis.hget(keys.cancel_requests, "gone-4") == b"destroy"


async def test_a_destroyed_job_left_alone_as_unfit_does_not_hold_the_ack_of_the_others(
    redis: Redis, namespace: str
) -> None:
    """The same for a destroyed job whose ack names it otherwise than its fetch did (its
    in-progress entry is not "<id>:<name>": left alone as unfit, not counted)."""
    keys = Keys(namespace)
    scripts, f = await _running_destroyed(redis, namespace, "gone-9")
    other = await _kept_beside(redis, namespace, scripts)
    await redis.hset(keys.stats, "cancelled", "many")
    done = [
        Acked("gone-9", "other", b'"result"', 0, 86_400_000, 1, f.token),
        Acked("kept", "walk", b'"result"', 0, 86_400_000, 1, other.token),
    ]
    report = await scripts.ack_report(POOL, done, False, _ms(), True)
    assert (report.refused, report.unfit) == ([], ["gone-9"])
    assert await redis.hmget(keys.stats, ["processed", "cancelled"]) == [b"1", b"many"]


async def test_an_ack_of_a_destroyed_job_replaces_a_cancelled_that_is_not_a_counter(
    redis: Redis, namespace: str
) -> None:
    """Stats' `cancelled` that is not a counter is read before the first write (its HINCRBY
    would raise after the writes) and replaced by the call's count: a statistic does not stop
    the work it counts (the call was refused before)."""
    keys = Keys(namespace)
    scripts, f = await _running_destroyed(redis, namespace, "gone-3")
    await redis.hset(keys.stats, "cancelled", "many")
    done = [Acked("gone-3", "walk", b'"result"', 0, 86_400_000, 1, f.token)]
    assert await scripts.ack(POOL, done, False, _ms(), True) == []
    assert await redis.hmget(keys.stats, ["processed", "cancelled"]) == [None, b"1"]
    assert await _traces(redis, namespace, "gone-3") == []


async def test_a_cancel_request_costs_the_others_nothing(redis: Redis, namespace: str) -> None:
    """A plain cancel request (not a destroy) of another job leaves an ack as it was."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    await scripts.heartbeat(POOL, b"{}", 60_000, mode="register")
    async with Enqueuer(redis, namespace=namespace) as enq:
        await enq.enqueue("walk", {}, job_id="a")
    (f,) = await scripts.fetch(POOL, _ms(), 1, [("walk", 0)]) or []
    await redis.hset(keys.cancel_requests, "other", "cancel")
    done = [Acked("a", "walk", b'"r"', 0, 86_400_000, 1, f.token)]
    assert await scripts.ack(POOL, done, False, _ms(), True) == []
    assert await redis.get(keys.done("a")) is not None
    assert await redis.zcard(keys.history_of("walk")) == 1


@pytest.mark.parametrize("how", ["cancel", "request_cancel"])
@pytest.mark.parametrize("mode", ["cancelled", "dead"])
async def test_a_cancel_after_a_destroy_leaves_it_a_destroy(
    redis: Redis, namespace: str, how: str, mode: str
) -> None:
    """A running job destroyed, then cancelled before its pool acted (another admin, or its
    workflow run cancelled: WorkflowRun.cancel cancels running members with cancel.lua): the
    cancel overwrote the `destroy` request with `cancel`, and the job ended in the cancelled set
    with its record, args and history after destroy() had promised every trace gone. The
    request stays a destroy (and is signalled as one); the attempt's end drops the job."""
    keys = Keys(namespace)
    scripts, f = await _running_destroyed(redis, namespace, "gone-5")
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.control_channel)
        await pubsub.get_message(timeout=5)  # (the subscription's confirmation)
        if how == "cancel":
            async with Client(redis, namespace=namespace) as client:
                assert await client.cancel("gone-5") == "running"
        else:
            assert await scripts.request_cancel("gone-5", "cancel")
        message = await pubsub.get_message(timeout=5)
    assert message is not None and message["data"] == b"destroy:gone-5"
    assert await redis.hget(keys.cancel_requests, "gone-5") == b"destroy"
    now = _ms()
    # what the pool sends, having heard the cancel last (Settler.cancelled), or a last failure
    target = keys.cancelled if mode == "cancelled" else keys.dead
    s = Settle(
        "gone-5", "walk", mode, target, now, 1, dead_max=1000, history=True, ttl_ms=86_400_000,
        token=f.token, score_ms=now, counter=mode, error=b'{"error":"boom"}',
    )  # fmt: skip
    assert await scripts.settle_report(POOL, [s]) == [True]
    assert await _traces(redis, namespace, "gone-5") == []
    assert await redis.hget(keys.stats, "cancelled") == b"1"
