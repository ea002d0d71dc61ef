"""Guards no other test held (review hunt-wf: each could be removed with every other test of
the workflows passing): what an add to a running run does with nodes that have ended and with
a run being cancelled (wf_add.lua), and a member destroyed while it runs whose handler returns
anyway (ack.lua's end of a dropped member)."""

from __future__ import annotations

import asyncio

import pytest

from errands import Client, DependencyFailed, Job, NonRetryableError, Workflow, WorkflowError
from errands.workflows.store import WorkflowScripts
from tests.support.invariants import assert_invariants

from .conftest import Env


async def test_an_add_after_ended_nodes_waits_only_for_the_open_ones(env: Env) -> None:
    """After a node that succeeded: no edge (it would wait for an end that came already, and
    the run never finished). After one that failed: a "fail" member is refused (it would run
    though a dependency did not succeed), a "continue" one runs and reads the failure."""
    errors: list[str] = []

    @env.pool.job("boom")
    async def boom(job: Job) -> None:
        raise NonRetryableError("boom")

    @env.pool.job("adder")
    async def adder(job: Job) -> None:
        await job.workflow.add("work", {"value": "late"}, id="late", after=["ok"])
        try:
            await job.workflow.add("work", {}, id="strict", after=["bad"])
        except WorkflowError as exc:
            errors.append(str(exc))
        await job.workflow.add(
            "merge", {}, id="lenient", after=["bad", "ok"], on_dependency_failure="continue"
        )

    wf = Workflow()
    wf.add("work", {"value": "ok"}, id="ok")
    wf.add("boom", {}, id="bad")
    wf.add("work", {}, id="tail", after=["bad"], on_dependency_failure="continue")
    wf.add("adder", {}, id="adder", after=["ok", "tail"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert errors == ["dependency bad did not succeed"]
    assert "strict" not in status.nodes
    assert status.nodes["late"].state == "succeeded" and status.nodes["late"].result == "late"
    assert status.nodes["lenient"].state == "succeeded"
    deps = env.deps[run.job_id("lenient")]
    assert deps["ok"] == "ok" and isinstance(deps["bad"], DependencyFailed)
    assert status.status == "succeeded"  # (bad's failure went to "continue" dependents only)
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_an_add_to_a_run_being_cancelled_is_refused(env: Env) -> None:
    """The run's cancel has begun (run.cancel's first call) and a member is still open, so the
    run still reads `running`: an add is refused, where a member without open dependencies was
    queued and ran in the cancelled run."""
    await env.redis.sadd(env.keys.paused, "work")  # (r stays queued: the run stays open)
    wf = Workflow()
    wf.add("work", {}, id="r")
    run = await env.enqueuer.enqueue_workflow(wf)
    assert await WorkflowScripts(env.redis, env.keys).cancel(run.id, [])
    assert (await run.status()).status == "running"
    with pytest.raises(WorkflowError, match="is not running"):
        await run.add("merge", {}, id="late")
    assert "late" not in (await run.status()).nodes
    assert await run.cancel()
    await env.redis.srem(env.keys.paused, "work")
    await env.pool.drain(timeout=10)
    assert (await run.wait(timeout=5)).status == "cancelled"
    assert env.ran == []
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_member_destroyed_while_it_runs_ends_cancelled_even_if_it_returns(
    env: Env,
) -> None:
    """Its handler swallows the cancel and returns: the ack finds the destroy request and drops
    the job; in its run it ended cancelled, so its "fail" dependent never runs (recorded as
    succeeded, the dependent ran on a dependency that was destroyed)."""
    started = asyncio.Event()

    @env.pool.job("stubborn")
    async def stubborn(job: Job) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    wf = Workflow()
    wf.add("stubborn", {}, id="a")
    wf.add("work", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.start()
    await asyncio.wait_for(started.wait(), 10)
    assert await Client(env.redis, namespace=env.namespace).destroy(run.job_id("a"))
    status = await run.wait(timeout=10)
    assert status.status == "failed" and status.failed_node == "a"
    assert status.nodes["a"].state == "cancelled" and status.nodes["b"].state == "cancelled"
    await env.pool.drain(timeout=10)
    assert env.ran == []
    await assert_invariants(env.redis, env.namespace, drained=True)
