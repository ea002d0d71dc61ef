"""Growing a run from inside a member: the new members run before the ones they are added
before, and the run cannot finish early, whatever the order of acks."""

from __future__ import annotations

import asyncio

import pytest

from errands import Job, Workflow, WorkflowError
from errands.store.scripts import Scripts
from tests.support.invariants import assert_invariants

from .conftest import Env


async def test_a_member_adds_parts_before_merge(env: Env) -> None:
    @env.pool.job("split")
    async def split(job: Job) -> int:
        for i in range(5):
            await job.workflow.add("work", {"value": i}, id=f"extra{i}", before=["merge"])
        return 5

    wf = Workflow()
    wf.add("split", {}, id="split")
    wf.add("merge", {}, id="merge", after=["split"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded"
    deps = env.deps[run.job_id("merge")]
    assert deps == {"split": 5, **{f"extra{i}": i for i in range(5)}}
    assert status.nodes["merge"].after == ("split", *(f"extra{i}" for i in range(5)))
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_an_add_racing_the_last_ack_does_not_finish_the_run(env: Env) -> None:
    """The adder is the last open member: the added member keeps the run open after its ack."""
    release = asyncio.Event()

    @env.pool.job("adder")
    async def adder(job: Job) -> None:
        await job.workflow.add("slowpart", {}, id="late")

    @env.pool.job("slowpart")
    async def slowpart(job: Job) -> str:
        await release.wait()
        return "late"

    wf = Workflow()
    wf.add("adder", {}, id="adder")
    wf.on_success("notify", {})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.start()

    async def adder_acked() -> bool:
        return (await run.status()).nodes["adder"].state == "succeeded"

    deadline = asyncio.get_running_loop().time() + 10
    while not await adder_acked():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    status = await run.status()
    assert status.status == "running" and status.nodes["late"].state == "released"
    assert "notify" not in env.names()
    release.set()
    status = await run.wait(timeout=10)
    assert status.status == "succeeded"
    await env.pool.drain(timeout=10)
    assert env.names().count("notify") == 1


async def test_adding_to_a_node_no_longer_waiting_is_refused(env: Env) -> None:
    errors: list[str] = []

    @env.pool.job("bad")
    async def bad(job: Job) -> None:
        for kwargs in ({"before": ["done"]}, {"before": ["nope"]}, {"after": ["nope"]}):
            try:
                await job.workflow.add("work", {}, **kwargs)
            except WorkflowError as exc:
                errors.append(str(exc))
        try:
            await job.workflow.add("work", {}, id="bad")
        except WorkflowError as exc:
            errors.append(str(exc))

    wf = Workflow()
    wf.add("work", {}, id="done")
    wf.add("bad", {}, id="bad", after=["done"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    assert (await run.wait(timeout=5)).status == "succeeded"
    assert len(errors) == 4
    assert "not waiting" in errors[0] and "not waiting" in errors[1]
    assert "unknown node nope" in errors[2] and "already in the workflow" in errors[3]
    with pytest.raises(WorkflowError, match="not running"):
        await run.add("work", {})  # the run has finished
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_dependency_results_outside_a_workflow_raise(env: Env) -> None:
    seen: list[str] = []

    @env.pool.job("plain")
    async def plain(job: Job) -> None:
        try:
            await job.dependency_results()
        except RuntimeError as exc:
            seen.append(str(exc))

    await env.enqueuer.enqueue("plain")
    await env.pool.drain(timeout=10)
    assert seen and "not part of a workflow" in seen[0]


async def test_an_add_closing_a_cycle_raises_workflow_error(env: Env) -> None:
    """s -> a -> b; x after b and before a would wait for itself through a and b."""
    wf = Workflow()
    wf.add("work", {}, id="s")
    wf.add("work", {}, id="a", after=["s"])
    wf.add("work", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)  # no pool runs: s stays queued
    with pytest.raises(WorkflowError, match="would close a cycle: x -> a -> b -> x"):
        await run.add("work", {}, id="x", after=["b"], before=["a"])
    assert "x" not in (await run.status()).nodes
    await run.add("work", {}, id="x", after=["s"], before=["b"])  # no cycle
    await run.add("work", {}, id="x", after=["s"], before=["b"])  # the same add: no error
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert status.status == "succeeded" and status.nodes["b"].after == ("a", "x")
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_an_add_sees_no_cycle_through_the_edges_a_cancelled_member_leaves(env: Env) -> None:
    """X (after 250 roots and zB) is cancelled while waiting: some of its in edges, X<zB among
    them, and zC<X are left for the work list. N after zC and before zB closes no cycle (X
    has ended), but the search followed X's in edges and refused it (found by review)."""
    wf = Workflow(id="cyc")
    wf.add("work", {}, id="R")
    wf.add("work", {}, id="zB", after=["R"])
    roots = [wf.add("work", {}, id=f"p{i:03d}") for i in range(250)]
    wf.add("work", {}, id="X", after=[*roots, "zB"])
    for i in range(250):
        wf.add("work", {}, id=f"d{i:03d}", after=["X"], on_dependency_failure="continue")
    wf.add("work", {}, id="zC", after=["X"], on_dependency_failure="continue")
    run = await env.enqueuer.enqueue_workflow(wf)  # no pool runs: R stays queued
    assert await Scripts(env.redis, env.keys).cancel(run.job_id("X"), "work", 1, 60_000)
    inn = env.keys.workflow(run.id, "in")
    assert await env.redis.zscore(inn, "X<zB") is not None  # the case: a stale edge on the path
    await run.add("work", {}, id="N", after=["zC"], before=["zB"])
    assert "N" in (await run.status()).nodes


@pytest.mark.parametrize("where", ["after", "before"])
async def test_an_add_naming_a_callback_raises_workflow_error(env: Env, where: str) -> None:
    """'!on_success' is a callback's reserved id: as a before node it was released early."""
    wf = Workflow()
    wf.add("work", {}, id="s")
    wf.on_success("work", {})
    run = await env.enqueuer.enqueue_workflow(wf)
    with pytest.raises(WorkflowError, match="invalid node id '!on_success'"):
        await run.add("work", {}, id="x", **{where: ["!on_success"]})
    assert "x" not in (await run.status()).nodes
