"""A member that ends once its run's cancel has begun (run.cancel's first call marks the run,
its later calls end the members waiting: the end comes between them, or the caller died after
the first) releases none of its dependents: they end cancelled without running, and the run
ends cancelled, calling no callback (review hunt-wf: with the walk's check of the mark removed,
every other test of the workflows passed and the dependent ran)."""

from __future__ import annotations

from errands import Client, Workflow
from errands.workflows.store import WorkflowScripts
from tests.support.invariants import assert_invariants

from .conftest import Env


def two_step(policy: str) -> Workflow:
    wf = Workflow()
    wf.add("work", {"value": "r"}, id="r")
    wf.add("merge", {}, id="d", after=["r"], on_dependency_failure=policy)  # type: ignore[arg-type]
    wf.on_success("notify", {"outcome": "ok"})
    wf.on_failure("notify", {"outcome": "failed"})
    return wf


async def test_a_member_succeeding_once_the_cancel_has_begun_releases_nothing(env: Env) -> None:
    run = await env.enqueuer.enqueue_workflow(two_step("fail"))
    assert await WorkflowScripts(env.redis, env.keys).cancel(run.id, [])  # (run.cancel's first)
    await env.pool.drain(timeout=10)
    status = await run.wait(timeout=5)
    assert status.status == "cancelled"
    assert status.nodes["r"].state == "succeeded" and status.nodes["d"].state == "cancelled"
    assert status.nodes["d"].error == {"error": "the workflow was cancelled", "node": "r"}
    assert env.names() == ["work"]
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_member_cancelled_once_the_cancel_has_begun_releases_no_continue_dependent(
    env: Env,
) -> None:
    await env.redis.sadd(env.keys.paused, "work")
    run = await env.enqueuer.enqueue_workflow(two_step("continue"))
    assert await WorkflowScripts(env.redis, env.keys).cancel(run.id, [])
    assert await Client(env.redis, namespace=env.namespace).cancel(run.job_id("r")) == "cancelled"
    await env.pool.drain(timeout=10)
    status = await run.wait(timeout=5)
    assert status.status == "cancelled"
    assert status.nodes["r"].state == "cancelled" and status.nodes["d"].state == "cancelled"
    assert env.ran == []
    await env.redis.srem(env.keys.paused, "work")
    await assert_invariants(env.redis, env.namespace, drained=True)
