"""Redis Cluster specifics: every Lua script keeps its keys in the namespace's slot, namespaces
spread over the masters, a passed ``RedisCluster`` client, and enqueues confirmed by replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any

import pytest
import redis
import redis.cluster
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript, Script
from redis.crc import key_slot

from errands import (
    Client,
    Concurrency,
    Dedup,
    Enqueuer,
    FakeClock,
    FixedBackoff,
    Job,
    Rate,
    WorkerPool,
    Workflow,
)
from errands.clock import to_ms
from errands.errors import NotReplicatedError
from errands.store.connection import describe
from errands.store.keys import Keys
from errands.store.scripts import Scripts, lua_source
from errands.worker.requeuer import trim_history
from tests.support.infra import ClusterInfra
from tests.support.procs import eventually

from .conftest import unique_namespace

LUA_SCRIPTS = sorted(
    p.name.removesuffix(".lua")
    for p in resources.files("errands.store").joinpath("lua").iterdir()
    if p.name.endswith(".lua")
)


@pytest.fixture
def script_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[Any]]]]:
    """Every script call (async and from the heartbeat thread) as (script name, keys)."""
    by_source = {lua_source(name): name for name in LUA_SCRIPTS}
    calls: list[tuple[str, list[Any]]] = []
    async_call, sync_call = AsyncScript.__call__, Script.__call__

    async def recording_async(self: AsyncScript, keys: Any = None, *a: Any, **kw: Any) -> Any:
        calls.append((by_source.get(self.script, "?"), list(keys or [])))
        return await async_call(self, keys, *a, **kw)

    def recording_sync(self: Script, keys: Any = None, *a: Any, **kw: Any) -> Any:
        calls.append((by_source.get(self.script, "?"), list(keys or [])))
        return sync_call(self, keys, *a, **kw)

    monkeypatch.setattr(AsyncScript, "__call__", recording_async)
    monkeypatch.setattr(Script, "__call__", recording_sync)
    yield calls


async def test_every_script_runs_on_the_cluster_with_its_keys_in_one_slot(
    cluster: ClusterInfra, script_calls: list[tuple[str, list[Any]]]
) -> None:
    """Drive every Lua script through a real cluster (a key outside the slot would fail with
    CROSSSLOT) and check that each call's keys hash to the namespace's slot."""
    namespace = unique_namespace()
    url = cluster.url
    clock = FakeClock(1_767_225_600.0)
    pool = WorkerPool.from_url(
        url, namespace=namespace, clock=clock, heartbeat_interval=0.5, dead_timeout=1.0
    )

    @pool.job("ok")
    async def ok(job: Job) -> str:
        await job.checkin("working")
        return "fine"

    @pool.job("fail", max_fails=2, backoff=FixedBackoff(0))
    async def fail(job: Job) -> None:
        raise RuntimeError("no")

    @pool.iterable_job("walk", checkpoint_every=0)  # checkpoint.lua
    async def walk(job: Job, cursor: int | None) -> AsyncIterator[int]:
        for i in range((cursor or 0) + 1, 3):
            yield i

    @pool.job("grow")
    async def grow(job: Job) -> None:
        await job.workflow.add("ok", {}, before=["m"])

    parted_runs: list[str | None] = []

    @pool.job("lim", limits=[Rate(100), Concurrency(1, per_partition=True)])
    async def lim(job: Job) -> None:
        parted_runs.append(job.partition)

    pool.every(60, "ok", name="minutely")
    async with (
        Enqueuer.from_url(url, namespace=namespace, clock=clock) as enqueuer,
        Client.from_url(url, namespace=namespace, clock=clock) as client,
    ):
        await enqueuer.enqueue("ok")
        await enqueuer.enqueue("walk")
        await enqueuer.enqueue_unique("ok", {"v": 1}, key="k")
        await enqueuer.enqueue_unique("ok", {"v": 2}, key="k")  # replaces the args
        # partitions and limits (lib/limits.lua) through enqueue, dedup and a workflow
        await enqueuer.enqueue("lim", partition="c1")
        await enqueuer.enqueue("lim", partition="c1", dedup=Dedup("l", until="finished"))
        parted = Workflow("parted")
        parted.add("lim", id="p0", partition="c1")
        parted.add("lim", id="p1", after=["p0"], partition="c1")  # released by p0's ack
        await enqueuer.enqueue_workflow(parted)
        bad = await enqueuer.enqueue("fail", dedup=Dedup("bad", until="finished"))
        later = await enqueuer.enqueue("ok", delay=3600)
        assert bad is not None and later is not None
        assert (await client.update_job(later.id, priority=2)).priority == 2  # update_job.lua
        assert await client.cancel(later.id) == "cancelled"
        gone = await enqueuer.enqueue("ok", delay=3600, dedup=Dedup("once"))  # enqueue_dedup
        assert gone is not None and await client.destroy(gone.id)  # destroy.lua
        scripts = Scripts(enqueuer.redis, Keys(namespace))
        await scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
        await enqueuer.enqueue("ok", {"for": "ghost"})
        assert await scripts.fetch("ghost", to_ms(clock.now()), 1, [("ok", 0)])
        assert not await scripts.request_cancel("not-running", "cancel")
        assert await pool.limiter("api", Rate(10)).try_acquire() == 0.0  # limiter.lua
        assert (await scripts.redis_time())[0] > 0
        wf = Workflow("cluster")
        wf.add("ok", id="a")
        wf.add("grow", id="g")
        wf.add("ok", id="m", after=["a", "g"])
        wf.on_success("ok")
        run = await enqueuer.enqueue_workflow(wf)
        doomed = Workflow("cancelled")
        doomed.add("ok", id="x", after=[doomed.add("ok", id="w")])
        assert await (await enqueuer.enqueue_workflow(doomed)).cancel()
        assert len(await client.workflows()) == 3  # wf_trim.lua
        await client.add_schedule("hourly", "ok", "@every 1h")
        await client.disable_schedule("hourly")  # schedule_enable.lua
        await client.enable_schedule("hourly")
        async with pool:
            assert pool.periodic is not None and pool.reaper is not None
            await pool.periodic.tick_once()
            clock.advance(61)
            await pool.periodic.tick_once()
            await pool.drain(timeout=20)
            status = await run.wait(timeout=20)
            assert parted_runs == ["c1"] * 4
            assert status.status == "succeeded" and len(status.nodes) == 4
            assert await client.retry_dead_job(bad.id)  # (move.lua takes its Dedup key again)
            await pool.drain(timeout=20)
            reaper, pools = pool.reaper, Keys(namespace).pools

            async def ghost_reaped() -> bool:
                await reaper.reap_once()  # now, or by the reaper's own round
                return await enqueuer.redis.zscore(pools, "ghost") is None

            await eventually(ghost_reaped, 20, "the ghost pool reaped")
            await pool.drain(timeout=20)
            assert pool.requeuer is not None
            await pool.requeuer.collect_garbage()  # unique locks, trimmed sets and history
            await scripts.unique_gc(to_ms(clock.now()) + 10**9)
            await trim_history(scripts, ["ok", "fail"], to_ms(clock.now()) + 1, 0)
            assert await client.quiet_pool(pool.id)  # quiet_request.lua
            assert await client.resume_pool(pool.id)
    slot = key_slot(Keys(namespace).jobs.encode())
    for name, keys in script_calls:
        slots = {key_slot(k if isinstance(k, bytes) else str(k).encode()) for k in keys}
        assert slots == {slot}, f"{name} was given keys of slots {slots}: {keys}"
    assert sorted({name for name, _keys in script_calls}) == LUA_SCRIPTS


def namespaces_on_every_master(cluster: ClusterInfra) -> dict[str, str]:
    """One fresh namespace per master: namespace -> name of the master holding its slot."""
    found: dict[str, str] = {}
    masters = {m.name for m, _r in cluster.shards()}
    while set(found.values()) != masters:
        ns = unique_namespace()
        master = cluster.master_of(Keys(ns).jobs).name
        if master not in found.values():
            found[ns] = master
    return found


async def test_namespaces_spread_over_the_masters(cluster: ClusterInfra) -> None:
    """One namespace per master, each with its own pool, all at once: each namespace's keys
    live on its master only."""
    placement = namespaces_on_every_master(cluster)
    done: dict[str, int] = dict.fromkeys(placement, 0)

    def pool_for(ns: str) -> WorkerPool:
        pool = WorkerPool.from_url(cluster.url, namespace=ns, concurrency=4)

        @pool.job("count")
        async def count(job: Job) -> None:
            done[ns] += 1

        return pool

    pools = [pool_for(ns) for ns in placement]
    enqueuers = [Enqueuer.from_url(cluster.url, namespace=ns) for ns in placement]
    try:
        for enqueuer in enqueuers:
            await enqueuer.enqueue_many([("count", {"i": i}) for i in range(30)])
        await asyncio.gather(*(p.drain(timeout=30) for p in pools))
    finally:
        for enqueuer in enqueuers:
            await enqueuer.aclose()
    assert done == dict.fromkeys(placement, 30)
    for ns, master_name in placement.items():
        for master, _replicas in cluster.shards():
            with master.client() as admin:
                found = list(admin.scan_iter(match=f"errands:{{{ns}}}:*", count=1000))
            assert bool(found) == (master.name == master_name), (ns, master.name)


async def test_a_passed_cluster_client_works_everywhere(cluster: ClusterInfra) -> None:
    namespace = unique_namespace()
    nodes = [ClusterNode("127.0.0.1", n.port) for n in cluster.nodes[:2]]
    rc = RedisCluster(startup_nodes=nodes)
    pool = WorkerPool(rc, namespace=namespace, heartbeat_interval=0.25, dead_timeout=1.0)
    seen: list[int] = []

    @pool.job("square")
    async def square(job: Job, n: int) -> int:
        seen.append(n)
        return n * n

    try:
        enqueuer, client = Enqueuer(rc, namespace=namespace), Client(rc, namespace=namespace)
        assert describe(rc).startswith("redis+cluster://127.0.0.1:")
        async with pool:
            assert pool.heartbeater is not None
            assert isinstance(pool.heartbeater._client, redis.cluster.RedisCluster)
            job = await enqueuer.enqueue("square", {"n": 7})
            assert job is not None
            assert await client.result(job.id, timeout=10) == 49
            assert [p.id for p in await client.worker_pools()] == [pool.id]
        assert await client.worker_pools() == []  # deregistered (a MULTI on the cluster)
        assert seen == [7]
    finally:
        await rc.aclose()


async def test_enqueue_waits_for_replicas(cluster: ClusterInfra) -> None:
    namespace = unique_namespace()
    for master, _replicas in cluster.shards():  # the first call meets NOSCRIPT and loads it
        master.call("SCRIPT", "FLUSH")
    async with Enqueuer.from_url(cluster.url, namespace=namespace, wait_replicas=1) as enqueuer:
        job = await enqueuer.enqueue("j", {"x": 1})
        assert job is not None
        assert await enqueuer.enqueue_many([("j", {"x": 2}), ("j", {"x": 3})])
        replica = cluster.replicas_of(Keys(namespace).jobs)[0]
        with replica.client() as admin:
            admin.execute_command("READONLY")
            assert admin.hexists(Keys(namespace).jobs, job.id)
    # one replica per master: asking for two cannot be met
    async with Enqueuer.from_url(
        cluster.url, namespace=namespace, wait_replicas=2, wait_timeout=0.1
    ) as enqueuer:
        with pytest.raises(NotReplicatedError, match="1 of 2 replicas"):
            await enqueuer.enqueue("j", {"x": 4})
