"""Workflow runs end to end on a real Redis: release in the dependency's ack, the failure
policies with a dead member, callbacks exactly once, an empty run, cancel mid-run, linger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import (
    Concurrency,
    DependencyFailed,
    Enqueuer,
    Job,
    Middleware,
    Next,
    Workflow,
    WorkflowError,
    WorkflowNotFoundError,
)
from errands.workflows.run import WorkflowRun
from tests.support.invariants import assert_invariants

from .conftest import Env


def fan_in(policy: str, *, fail: int | None = 1, size: int = 3) -> Workflow:
    wf = Workflow("fan-in")
    start = wf.add("work", {"value": "start"}, id="start")
    parts = [
        wf.add("work", {"value": i, "fail": i == fail}, id=f"p{i}", after=[start])
        for i in range(size)
    ]
    wf.add("merge", {}, id="merge", after=parts, on_dependency_failure=policy)  # type: ignore[arg-type]
    wf.on_success("notify", {"outcome": "ok"})
    wf.on_failure("notify", {"outcome": "failed"})
    return wf


async def test_fan_out_fan_in_succeeds_and_calls_on_success_once(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(fan_in("fail", fail=None))
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded" and status.failed_node is None
    assert status.counts() == {"succeeded": 5}
    assert env.names().count("merge") == 1
    assert env.deps[run.job_id("merge")] == {"p0": 0, "p1": 1, "p2": 2}
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]
    # the callback sees every member's outcome
    assert env.deps[f"{run.id}!on_success"]["start"] == "start"
    # start ran first, merge after every part
    order = [a.get("value", "merge") for _n, a in env.ran]
    assert order[0] == "start" and order[4] == "merge"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_policy_fail_cancels_dependents_and_calls_on_failure(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(fan_in("fail"))
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "failed" and status.failed_node == "p1"
    assert status.nodes["p1"].state == "failed"
    assert status.nodes["merge"].state == "cancelled"
    assert status.nodes["merge"].error["error"] == "dependency p1 failed"
    assert "merge" not in env.names()
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "failed"}]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_policy_continue_runs_the_dependent_with_the_error(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(fan_in("continue"))
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    deps = env.deps[run.job_id("merge")]
    assert deps["p0"] == 0 and deps["p2"] == 2
    assert isinstance(deps["p1"], DependencyFailed) and deps["p1"].status == "failed"
    assert "boom" in str(deps["p1"])
    # the failure was handed to merge, which succeeded: the run succeeds
    assert status.status == "succeeded"
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_policy_ignore_runs_the_dependent_as_if_it_succeeded(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(fan_in("ignore"))
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert env.names().count("merge") == 1
    assert status.status == "succeeded"
    assert status.nodes["p1"].state == "failed"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_failed_sink_fails_the_run(env: Env) -> None:
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("work", {"fail": True}, id="b")
    wf.on_failure("notify", {"outcome": "failed"})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "failed" and status.failed_node == "b"
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "failed"}]


async def test_fail_propagates_down_a_chain(env: Env) -> None:
    wf = Workflow()
    wf.add("work", {"fail": True}, id="a")
    wf.add("work", {}, id="b", after=["a"])
    wf.add("work", {}, id="c", after=["b"], on_dependency_failure="continue")
    wf.add("merge", {}, id="d", after=["c"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.nodes["b"].state == "cancelled"
    # c continues after b was cancelled, and d after c
    assert [n for n, _a in env.ran] == ["work", "work", "merge"]
    assert status.nodes["d"].state == "succeeded"
    assert status.status == "failed" and status.failed_node == "a"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_an_empty_workflow_succeeds_at_once(env: Env) -> None:
    wf = Workflow("empty")
    wf.on_success("notify", {"outcome": "ok"})
    run = await env.enqueuer.enqueue_workflow(wf)
    status = await run.status()
    assert status.status == "succeeded" and status.nodes == {}
    await env.pool.drain(timeout=20)
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "ok"}]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_the_status_names_the_callbacks_and_the_run_their_job_ids(env: Env) -> None:
    wf = Workflow("with-callbacks")
    wf.add("work", {"fail": True}, id="a")
    wf.on_success("notify", {"outcome": "ok"})
    wf.on_failure("merge", {})
    run = await env.enqueuer.enqueue_workflow(wf)
    status = await run.status()
    assert status.callbacks == {"on_failure": "merge", "on_success": "notify"}
    assert list(status.nodes) == ["a"]  # (no callback among the members)
    assert run.callback_job_id("on_failure") == f"{run.id}!on_failure"
    assert run.callback_job_id("on_success") == f"{run.id}!on_success"
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "failed"
    assert status.callbacks == {"on_failure": "merge", "on_success": "notify"}  # (once ended)
    assert list(env.deps) == [run.callback_job_id("on_failure")]  # (the id of the job run)
    # a run without callbacks, one with only on_failure; a callback's spec no script wrote
    alone = Workflow("alone")
    alone.add("work", {}, id="b")
    assert (await (await env.enqueuer.enqueue_workflow(alone)).status()).callbacks == {}
    one = Workflow("one")
    one.add("work", {}, id="c")
    one.on_failure("notify", {})
    one_run = await env.enqueuer.enqueue_workflow(one)
    assert (await one_run.status()).callbacks == {"on_failure": "notify"}
    await env.redis.hset(env.keys.workflow(one_run.id, "nodes"), "!on_failure", "{}")
    assert (await one_run.status()).callbacks == {"on_failure": "?"}


async def test_a_refused_graph_stores_nothing(env: Env) -> None:
    wf = Workflow()
    wf.add("work", id="a", after=["b"])
    wf.add("work", id="b", after=["a"])
    with pytest.raises(WorkflowError, match="cycle"):
        await env.enqueuer.enqueue_workflow(wf)
    assert await env.redis.keys(env.keys.prefix + "*") == []


class DropMerges(Middleware):
    """Drops every "merge" job it sees (a member here), passes the others on."""

    async def enqueue(self, job: Job, next: Next) -> Any:
        return None if job.name == "merge" else await next()


async def test_a_middleware_that_drops_a_member_fails_the_whole_call(env: Env) -> None:
    wf = fan_in("fail", fail=None)  # start and p0..p2 pass the middleware, merge does not
    wf.id = "run-1"
    async with Enqueuer(env.redis, namespace=env.namespace, middleware=[DropMerges()]) as e:
        with pytest.raises(WorkflowError, match=r"middleware dropped member run-1\.merge"):
            await e.enqueue_workflow(wf)
    assert await env.redis.keys(env.keys.prefix + "*") == []  # not a member, not the run
    # the id is not taken: the same workflow through an Enqueuer without it is stored whole
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    assert env.names().count("merge") == 1


async def test_enqueue_with_an_id_is_idempotent(env: Env) -> None:
    wf = fan_in("fail", fail=None)
    wf.id = "import-42"
    first = await env.enqueuer.enqueue_workflow(wf)
    again = await env.enqueuer.enqueue_workflow(wf)
    assert first.id == again.id == "import-42"
    assert await env.redis.zcard(env.keys.queue("work")) == 1  # start, once
    await env.pool.drain(timeout=20)
    assert env.names().count("merge") == 1
    assert env.names().count("notify") == 1


async def test_cancel_mid_run(env: Env) -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    @env.pool.job("slow")
    async def slow(job: object) -> None:
        started.set()
        await gate.wait()

    wf = Workflow("cancel-me")
    wf.add("slow", {}, id="s")
    wf.add("work", {"value": 1}, id="queued")  # a root that stays queued (paused below)
    wf.add("work", {}, id="after-s", after=["s"])
    wf.add("merge", {}, id="m", after=["after-s", "queued"], on_dependency_failure="continue")
    wf.on_success("notify", {"outcome": "ok"})
    wf.on_failure("notify", {"outcome": "failed"})
    await env.redis.sadd(env.keys.paused, "work")
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.start()
    await asyncio.wait_for(started.wait(), 10)
    assert await run.cancel() is True
    status = await run.wait(timeout=10)
    assert status.status == "cancelled"
    assert {n: s.state for n, s in status.nodes.items()} == {
        "s": "cancelled",
        "queued": "cancelled",
        "after-s": "cancelled",
        "m": "cancelled",
    }
    assert env.ran == []  # no callback, nothing else ran
    assert await run.cancel() is False
    await env.redis.srem(env.keys.paused, "work")
    await env.pool.drain(timeout=10)
    assert env.ran == []
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_keys_expire_after_the_linger(env: Env) -> None:
    wf = fan_in("fail", fail=None)
    wf.linger = 0.3
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    await run.wait(timeout=5)
    ttl = await env.redis.pttl(env.keys.workflow(run.id))
    assert 0 < ttl <= 300
    deadline = asyncio.get_running_loop().time() + 5
    while await env.redis.keys(env.keys.workflow(run.id) + "*"):
        assert asyncio.get_running_loop().time() < deadline, "workflow keys outlived the linger"
        await asyncio.sleep(0.05)
    with pytest.raises(WorkflowNotFoundError):
        await run.status()
    assert not await env.redis.exists(env.keys.workflow_of)


async def test_a_released_member_keeps_its_priority(env: Env) -> None:
    await env.redis.sadd(env.keys.paused, "work")
    plain = await env.enqueuer.enqueue("work", {})
    wf = Workflow()
    wf.add("merge", {}, id="m")
    wf.add("work", {}, id="urgent", after=["m"], priority=5)
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)  # merge runs and releases urgent; "work" is paused
    order = [m.decode() for m in await env.redis.zrange(env.keys.queue("work"), 0, -1)]
    assert plain is not None and order == [run.job_id("urgent"), plain.id]
    assert await env.redis.hget(env.keys.priorities, run.job_id("urgent")) == b"5"
    await env.redis.srem(env.keys.paused, "work")
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_members_obey_the_limits_of_their_job_type(env: Env) -> None:
    running, most = 0, 0

    @env.pool.job("limited", limits=[Concurrency(2)])
    async def limited(job: object) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1

    wf = Workflow()
    start = wf.add("work", {"value": 0}, id="start")
    for i in range(10):
        wf.add("limited", {}, id=f"l{i}", after=[start])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    assert most == 2
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_wait_raises_timeout_error_and_the_run_goes_on(redis: Redis, namespace: str) -> None:
    """``run.wait(timeout=...)`` raises TimeoutError once the timeout is over (its message names
    the run and its state: asyncio's had none), and the run goes on; without a timeout it waits."""
    wf = Workflow("w", id="late")
    wf.add("work", {}, id="a")  # (no pool serves it: the run stays running)
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match=r"waited 0\.2s for workflow run 'late': it is running"):
        await run.wait(timeout=0.2)
    assert 0.19 <= time.monotonic() - began < 2.0
    assert (await run.status()).status == "running"
    with pytest.raises(TimeoutError):  # (the caller's own timeout: re-raised as it is)
        async with asyncio.timeout(0.1):
            await run.wait()
    with pytest.raises(WorkflowNotFoundError, match="no workflow run 'other'"):
        await WorkflowRun(redis, run.keys, "other").wait(timeout=5)
