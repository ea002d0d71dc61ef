"""Every way a member's life ends releases its dependents in the same script: the reaper
burying it as poison, an admin cancel of a queued member, a destroy, a cancel while it runs,
a drop by ``skip_dead``."""

from __future__ import annotations

import asyncio

import pytest

from errands import Client, DependencyFailed, Job, NonRetryableError, Workflow
from errands.clock import to_ms
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

from .conftest import Env


def two_step(policy: str = "fail") -> Workflow:
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("merge", {}, id="b", after=["a"], on_dependency_failure=policy)  # type: ignore[arg-type]
    wf.on_failure("notify", {"outcome": "failed"})
    wf.on_success("notify", {"outcome": "ok"})
    return wf


async def test_a_member_buried_as_poison_by_the_reaper(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(two_step("continue"))
    scripts = Scripts(env.redis, env.keys)
    # a pool that takes the member and dies with it
    await scripts.heartbeat("ghost", b"{}", 60_000, mode="register")
    fetched = await scripts.fetch("ghost", 0, 1, [("work", 0)])
    assert fetched and fetched[0].id == run.job_id("a")
    member = f"{run.job_id('a')}:work".encode()
    # it dies: its last beat long ago (a reap in the millisecond of the beat saw it alive)
    await env.redis.zadd(env.keys.pools, {"ghost": 0})
    reaped = await scripts.reap(
        "ghost", 1000, 1, b'{"error":"poison"}', b"{}", [(member, run.job_id("a"), "work")]
    )
    assert reaped.buried == 1
    status = await run.status()
    assert status.nodes["a"].state == "failed" and status.nodes["a"].error == {"error": "poison"}
    assert status.nodes["b"].state == "released"  # "continue": merge runs with the error
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded"
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_client_cancel_of_a_queued_member(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(two_step())
    client = Client(env.redis, namespace=env.namespace)
    assert await client.cancel(run.job_id("a")) == "cancelled"
    status = await run.status()
    assert status.status == "failed" and status.nodes["b"].state == "cancelled"
    await env.pool.drain(timeout=20)
    assert env.names() == ["notify"]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_client_destroy_of_a_queued_member(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(two_step("ignore"))
    client = Client(env.redis, namespace=env.namespace)
    assert await client.destroy(run.job_id("a"))
    status = await run.status()
    assert status.nodes["a"].state == "cancelled" and status.nodes["b"].state == "released"
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_client_cancel_of_a_running_member(env: Env) -> None:
    started = asyncio.Event()

    @env.pool.job("hang")
    async def hang(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    wf = Workflow()
    wf.add("hang", {}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.start()
    await asyncio.wait_for(started.wait(), 10)
    client = Client(env.redis, namespace=env.namespace)
    assert await client.cancel(run.job_id("a")) == "running"
    status = await run.wait(timeout=10)
    assert status.status == "failed"
    assert status.nodes["a"].state == "cancelled" and status.nodes["b"].state == "cancelled"
    await env.pool.drain(timeout=10)
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_retrying_member_outlives_the_linger(env: Env) -> None:
    """The linger counts from the run's end: a member retrying for longer keeps it whole."""
    attempts: list[int] = []

    @env.pool.job("flaky", max_fails=5)
    async def flaky(job: Job) -> int:
        attempts.append(job.attempt)
        if job.attempt < 3:
            raise RuntimeError("not yet")
        return job.attempt

    wf = Workflow(linger=0.2)
    wf.add("flaky", {}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.start()
    deadline = asyncio.get_running_loop().time() + 10
    while len(attempts) < 1:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    # while the member waits for its retry, nothing of the run has a TTL: the linger has not
    # started, however long the retries take
    assert await env.redis.pttl(env.keys.workflow(run.id)) == -1
    assert await env.redis.pttl(env.keys.workflow(run.id, "nodes")) == -1
    retry_key = env.keys.retry("flaky")
    while len(attempts) < 3:
        # run the retries now rather than after their backoff
        for member in await env.redis.zrange(retry_key, 0, -1):
            await env.redis.zadd(retry_key, {member: to_ms(0)})
        await env.pool.drain(timeout=10)
        assert asyncio.get_running_loop().time() < deadline
    status = await run.wait(timeout=10)
    assert status.status == "succeeded" and env.deps[run.job_id("b")] == {"a": 3}


@pytest.mark.parametrize("policy", ["fail", "continue"])
async def test_a_member_dropped_by_skip_dead_ends(env: Env, policy: str) -> None:
    """Failed for good and deleted (skip_dead), not kept dead: an end all the same."""

    @env.pool.job("fragile", skip_dead=True)
    async def fragile(job: Job) -> None:
        raise NonRetryableError("gone")

    wf = Workflow()
    wf.add("fragile", {}, id="a")
    wf.add("merge", {}, id="b", after=["a"], on_dependency_failure=policy)  # type: ignore[arg-type]
    wf.on_failure("notify", {"outcome": "failed"})
    wf.on_success("notify", {"outcome": "ok"})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert not await env.redis.hexists(env.keys.jobs, run.job_id("a"))  # dropped, not dead
    assert await env.redis.zscore(env.keys.dead, run.job_id("a")) is None
    assert status.nodes["a"].state == "failed"
    if policy == "fail":
        assert status.status == "failed" and status.failed_node == "a"
        assert status.nodes["b"].state == "cancelled" and "merge" not in env.names()
        assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "failed"}]
    else:
        assert status.status == "succeeded" and status.nodes["b"].state == "succeeded"
        assert isinstance(env.deps[run.job_id("b")]["a"], DependencyFailed)
        assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]
    await assert_invariants(env.redis, env.namespace, drained=True)
