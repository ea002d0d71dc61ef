"""Dedup until started and until finished: what the enqueue reports, when the key is freed
(start, ack, death, cancel, delete), compare-and-delete on the owner, racing enqueuers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, Job, WorkerPool
from errands.errors import NonRetryableError
from errands.store.keys import Keys
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

from .conftest import until


def test_spec_is_checked() -> None:
    assert Dedup("k").mode == "s"
    assert Dedup("k", until="finished").mode == "f"
    assert Dedup("k", throttle=1.5).window_ms == 1500
    assert Dedup("k").scoped("sync") == "sync:k"
    for bad in ("", "a{b}", "a\nb", "x" * 1001):
        with pytest.raises(ValueError):
            Dedup(bad)
    with pytest.raises(ValueError):
        Dedup("k", until="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Dedup("k", throttle=0)
    with pytest.raises(ValueError):
        Dedup("k", until="finished", throttle=5)


async def test_until_started_drops_while_waiting_and_names_the_holder(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("user:7"))
    assert first is not None and first.dedup is not None
    assert first.dedup.status == "enqueued" and first.dedup.holder == first.id
    second = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("user:7"))
    assert second is not None and second.dedup is not None
    assert (second.dedup.status, second.dedup.holder, second.dedup.key) == (
        "dropped",
        first.id,
        "user:7",
    )
    assert second.id == first.id  # the returned Job stands for the holder
    assert not second.dedup.enqueued
    # per job name: the same key on another name is another key
    other = await enqueuer.enqueue("notify", {}, dedup=Dedup("user:7"))
    assert other is not None and other.dedup is not None and other.dedup.enqueued
    keys = Keys(namespace)
    assert await redis.hlen(keys.jobs) == 2
    assert await redis.hget(keys.dedup, "sync:user:7") == first.id.encode()
    await assert_invariants(redis, namespace)


async def test_the_result_of_a_dropped_job_is_the_holders(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("user:7"))
    dropped = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("user:7"))
    assert first is not None and dropped is not None and dropped.dedup is not None
    assert dropped.dedup.status == "dropped"
    assert dropped.args == {"v": 2}  # the arguments passed, not the holder's
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job, v: int) -> int:
        return v * 10

    async with pool:
        assert await dropped.result(timeout=10) == 10  # the holder ran, with v=1
        await pool.drain(timeout=10)
    assert await redis.hlen(Keys(namespace).jobs) == 0


async def test_until_started_frees_the_key_at_the_start(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync")
    async def sync(job: Job, v: int) -> None:
        runs.append(v)
        started.set()
        await release.wait()

    first = await enqueuer.enqueue("sync", {"v": 1}, dedup=Dedup("k"))
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        await assert_invariants(redis, namespace)
        second = await enqueuer.enqueue("sync", {"v": 2}, dedup=Dedup("k"))
        assert second is not None and second.dedup is not None and second.dedup.enqueued
        assert first is not None and second.id != first.id
        release.set()
        await pool.drain(timeout=10)
    assert runs == [1, 2]
    assert await redis.hlen(Keys(namespace).dedup) == 0
    await assert_invariants(redis, namespace, drained=True)


async def test_until_finished_holds_while_running_and_retrying(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    keys = Keys(namespace)
    started, release, second = asyncio.Event(), asyncio.Event(), asyncio.Event()
    attempts: list[int] = []
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy", backoff=lambda fails: 1.0)
    async def deploy(job: Job) -> None:
        attempts.append(job.attempt)
        started.set()
        if job.attempt == 1:
            await release.wait()
            raise RuntimeError("first attempt fails")
        await second.wait()

    d = Dedup("repo:x", until="finished")
    first = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert first is not None
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        dropped = await enqueuer.enqueue("deploy", {}, dedup=d)
        assert dropped is not None and dropped.dedup is not None
        assert (dropped.dedup.status, dropped.dedup.holder) == ("dropped", first.id)
        await assert_invariants(redis, namespace)
        release.set()
        # failed once, waits for its retry, runs again: still the holder
        await until(lambda: redis.zscore(keys.retry("deploy"), first.id))
        again = await enqueuer.enqueue("deploy", {}, dedup=d)
        assert again is not None and again.dedup is not None
        assert again.dedup.status == "dropped"
        await assert_invariants(redis, namespace)
        await until(lambda: len(attempts) == 2)
        again = await enqueuer.enqueue("deploy", {}, dedup=d)
        assert again is not None and again.dedup is not None
        assert again.dedup.status == "dropped"
        second.set()
        await pool.drain(timeout=10)
    assert attempts == [1, 2]
    assert await redis.hlen(keys.dedup) == 0 and await redis.hlen(keys.dedup_of_job) == 0
    await assert_invariants(redis, namespace, drained=True)
    after = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert after is not None and after.dedup is not None and after.dedup.enqueued


async def test_until_finished_frees_the_key_when_the_job_dies(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job) -> None:
        raise NonRetryableError("broken")

    d = Dedup("repo:x", until="finished")
    first = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert first is not None
    async with pool:
        await pool.drain(timeout=10)
    assert await redis.zscore(Keys(namespace).dead, first.id) is not None
    await assert_invariants(redis, namespace, drained=True)
    second = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert second is not None and second.dedup is not None and second.dedup.enqueued


@pytest.mark.parametrize("action", ["cancel", "destroy", "delete_scheduled"])
async def test_admin_cancel_and_delete_of_a_waiting_owner_free_the_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client, action: str
) -> None:
    d = Dedup("k", until="finished")
    first = await enqueuer.enqueue("sync", {}, dedup=d, delay=60)
    assert first is not None
    if action == "cancel":
        assert await client.cancel(first.id) == "cancelled"
    elif action == "destroy":
        assert await client.destroy(first.id)
    else:
        assert await client.delete_scheduled_job(first.id)
    await assert_invariants(redis, namespace)
    second = await enqueuer.enqueue("sync", {}, dedup=d)
    assert second is not None and second.dedup is not None and second.dedup.enqueued
    await assert_invariants(redis, namespace)


async def test_cancel_of_a_running_owner_frees_the_key_when_it_settles(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    started = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("deploy")
    async def deploy(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    d = Dedup("k", until="finished")
    first = await enqueuer.enqueue("deploy", {}, dedup=d)
    assert first is not None
    async with pool:
        async with asyncio.timeout(10):
            await started.wait()
        assert await client.cancel(first.id) == "running"
        await until(lambda: redis.zscore(Keys(namespace).cancelled, first.id))
        await assert_invariants(redis, namespace)
        second = await enqueuer.enqueue("deploy", {}, dedup=d, delay=60)
        assert second is not None and second.dedup is not None and second.dedup.enqueued
        assert await client.destroy(second.id)
    await assert_invariants(redis, namespace, drained=True)


async def test_an_owner_that_no_longer_exists_counts_as_free_and_its_late_ack_frees_nothing(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """A zombie: the owner's job vanished (say, removed by hand) while an attempt of it ran;
    the next enqueue takes the key; the zombie's late ack must not free the new owner's key."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    d = Dedup("k", until="finished")
    old = await enqueuer.enqueue("sync", {}, dedup=d)
    assert old is not None
    assert await scripts.heartbeat("p1", b"{}", 60_000, "register") > 0
    fetched = await scripts.fetch("p1", 0, 1, [("sync", 0)])
    assert fetched is not None and [f.id for f in fetched] == [old.id]
    await redis.hdel(keys.jobs, old.id)  # gone, while its attempt still runs
    new = await enqueuer.enqueue("sync", {}, dedup=d)
    assert new is not None and new.dedup is not None and new.dedup.enqueued
    from errands.store.records import Acked

    refused = await scripts.ack(
        "p1", [Acked(old.id, "sync", b"null", 0, 0, 1, fetched[0].token)], False, 0, False
    )
    assert refused == []
    assert await redis.hget(keys.dedup, "sync:k") == new.id.encode()
    third = await enqueuer.enqueue("sync", {}, dedup=d)
    assert third is not None and third.dedup is not None
    assert (third.dedup.status, third.dedup.holder) == ("dropped", new.id)


async def test_racing_enqueuers_store_exactly_one(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    enqueuers = [Enqueuer.from_url(redis_url, namespace=namespace) for _ in range(30)]
    try:
        await asyncio.gather(*(e.redis.ping() for e in enqueuers))
        for mode in ({"until": "started"}, {"until": "finished"}, {"throttle": 60.0}):
            d = Dedup(f"race-{len(mode)}-{next(iter(mode.values()))}", **mode)  # type: ignore[arg-type]
            gate = asyncio.Event()

            async def racer(e: Enqueuer, i: int, d: Dedup = d, gate: asyncio.Event = gate) -> Any:
                await gate.wait()
                return await e.enqueue("sync", {"i": i}, dedup=d)

            tasks = [asyncio.create_task(racer(e, i)) for i, e in enumerate(enqueuers)]
            await asyncio.sleep(0.01)
            gate.set()
            jobs = await asyncio.gather(*tasks)
            outcomes = [j.dedup for j in jobs]
            enqueued = [o for o in outcomes if o.status == "enqueued"]
            assert len(enqueued) == 1, mode
            assert {o.holder for o in outcomes} == {enqueued[0].holder}
        assert await redis.hlen(Keys(namespace).jobs) == 3
        await assert_invariants(redis, namespace)
    finally:
        await asyncio.gather(*(e.aclose() for e in enqueuers))


async def test_a_resent_enqueue_finds_its_own_job(
    redis: Redis, namespace: str, enqueuer: Enqueuer
) -> None:
    """redis-py re-sends EVALSHA after a timeout: the second send must report the same."""
    keys = Keys(namespace)
    scripts = Scripts(redis, keys)
    call = ("sync", "j1", b'{"n":"sync","a":{}}', 0, 0, "f", "sync:k", 0)
    assert await scripts.enqueue_dedup(*call) == ("enqueued", "j1", "j1")
    assert await scripts.enqueue_dedup(*call) == ("enqueued", "j1", "j1")
    other = ("sync", "j2", b'{"n":"sync","a":{"x":1}}', 0, 0, "f", "sync:k", 0)
    assert await scripts.enqueue_dedup(*other) == ("dropped", "j1", "j1")
    taken = ("sync", "j1", b'{"n":"sync","a":{"y":1}}', 0, 0, "f", "sync:k", 0)
    assert (await scripts.enqueue_dedup(*taken))[0] == "existed"
    job = await enqueuer.enqueue("sync", {"z": 1}, job_id="j1", dedup=Dedup("k"))
    assert job is not None and job.existed and job.dedup is None
    assert await redis.hlen(keys.jobs) == 1
    await assert_invariants(redis, namespace)


async def test_typed_job_functions_take_dedup_and_timeout(
    redis: Redis, redis_url: str, namespace: str, enqueuer: Enqueuer
) -> None:
    pool = WorkerPool.from_url(redis_url, namespace=namespace)

    @pool.job("sync_user")
    async def sync_user(user: int) -> None:
        pass

    d = Dedup("user:7", until="finished")
    first = await sync_user.using(enqueuer, dedup=d, timeout=5).enqueue(7)
    second = await sync_user.using(enqueuer, dedup=d).enqueue(7)
    assert first is not None and first.dedup is not None and first.dedup.enqueued
    assert first.timeout == 5.0
    assert second is not None and second.dedup is not None
    assert (second.dedup.status, second.dedup.holder) == ("dropped", first.id)
    with pytest.raises(ValueError, match="enqueue_unique"):
        sync_user.using(enqueuer, unique=True, dedup=d)
    await assert_invariants(redis, namespace)
