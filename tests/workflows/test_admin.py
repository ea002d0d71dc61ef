"""Workflows from the Client and the command line: listing, showing, cancelling runs, and
``Client.job`` naming the workflow of a member."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from redis.asyncio import Redis

from errands import Client, Enqueuer, Job, NonRetryableError, Workflow
from errands.cli import main
from errands.clock import to_ms
from errands.store.scripts import Scripts
from errands.worker.requeuer import trim_history
from tests.support.invariants import assert_invariants

from .conftest import Env


def graph(name: str, linger: float = 3600.0) -> Workflow:
    wf = Workflow(name, linger=linger)
    wf.add("work", {"value": 1}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    return wf


async def test_client_lists_runs_and_names_the_workflow_of_a_member(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    first = await env.enqueuer.enqueue_workflow(graph("first"))
    second = await env.enqueuer.enqueue_workflow(graph("second"))
    listed = await client.workflows()
    assert {(r.id, r.name, r.status, r.size) for r in listed} == {
        (second.id, "second", "running", 2),
        (first.id, "first", "running", 2),
    }
    created = [r.created for r in listed]
    assert created == sorted(created, reverse=True)  # newest first (equal within a ms)
    info = await client.job(first.job_id("a"))
    assert info is not None and (info.workflow_id, info.workflow_node) == (first.id, "a")
    assert await client.workflow(second.id).cancel()
    await env.pool.drain(timeout=20)
    done = await client.workflow(first.id).status()
    assert done.status == "succeeded"
    finished = await client.job(first.job_id("b"))
    assert finished is not None and finished.workflow_id == first.id
    statuses = {r.id: r.status for r in await client.workflows()}
    assert statuses == {first.id: "succeeded", second.id: "cancelled"}
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_lingered_out_run_leaves_the_listing(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(graph("short", linger=0.2))
    await env.pool.drain(timeout=20)
    await run.wait(timeout=5)
    deadline = asyncio.get_running_loop().time() + 5
    while await env.redis.exists(env.keys.workflow(run.id)):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await assert_invariants(env.redis, env.namespace, drained=True)  # listed, linger over
    assert await client.workflows() == []
    assert await env.redis.exists(env.keys.workflows, env.keys.workflows_expiry) == 0


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_cli_lists_shows_and_cancels(
    capsys: pytest.CaptureFixture[str], redis_url: str, namespace: str
) -> None:
    where = ("--redis", redis_url, "--namespace", namespace)
    assert run_cli(capsys, "workflows", "list", *where) == (0, "no workflow runs\n")

    async def store() -> str:
        async with Enqueuer(Redis.from_url(redis_url), namespace=namespace) as enqueuer:
            run = await enqueuer.enqueue_workflow(graph("cli"))
            await enqueuer.redis.aclose()
            return run.id

    run_id = asyncio.run(store())
    code, out = run_cli(capsys, "workflows", "list", *where)
    assert code == 0 and run_id in out and "running" in out
    code, out = run_cli(capsys, "workflows", "list", "--json", *where)
    assert [r["id"] for r in json.loads(out)] == [run_id]
    code, out = run_cli(capsys, "workflows", "show", run_id, *where)
    assert code == 0 and "members: 1 released, 1 waiting" in out
    assert "merge" in out and "a" in out
    code, out = run_cli(capsys, "workflows", "show", run_id, "--json", *where)
    assert json.loads(out)["nodes"]["b"]["after"] == ["a"]
    assert run_cli(capsys, "workflows", "cancel", run_id, *where)[0] == 0
    assert run_cli(capsys, "workflows", "cancel", run_id, *where)[0] == 1
    assert "cancelled" in run_cli(capsys, "workflows", "show", run_id, *where)[1]
    assert main(["workflows", "show", "nope", *where]) == 2
    assert f"no workflow run 'nope' in namespace '{namespace}'" in capsys.readouterr().err


async def test_a_waiting_member_by_id(env: Env) -> None:
    """Client.job, cancel and destroy of a member still waiting for its dependencies."""
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])
    wf.add("work", {"value": 3}, id="c", after=["a"])
    wf.add("merge", {}, id="m", after=["b", "c"], on_dependency_failure="continue")
    run = await env.enqueuer.enqueue_workflow(wf)
    info = await client.job(run.job_id("b"))
    assert info is not None and info.status == "waiting" and info.args == {"value": 2}
    assert (info.workflow_id, info.workflow_node, info.waiting_for) == (
        run.id,
        "b",
        "dependencies: a",
    )
    assert await client.cancel(run.job_id("b")) == "cancelled"
    assert await client.destroy(run.job_id("c"))
    status = await run.status()
    assert status.nodes["b"].state == "cancelled" and status.nodes["c"].state == "cancelled"
    assert status.nodes["m"].state == "released"  # "continue": it runs with both errors
    await env.pool.drain(timeout=20)
    status = await run.wait(timeout=5)
    assert sorted(n for n, _a in env.ran) == ["merge", "work"]  # a and m; b and c never ran
    assert status.status == "succeeded"
    await assert_invariants(env.redis, env.namespace, drained=True)


async def test_a_cancelled_waiting_member_is_trimmed_from_the_history(env: Env) -> None:
    """Its history record went to the history of its job name, which no job had been queued
    under (not in ``names``, which only the queueing of a job fills): the history's trim, which
    goes over the names, never dropped it (nor the name's history)."""
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    assert await client.cancel(run.job_id("b")) == "cancelled"
    assert [h.status for h in await client.history_job(run.job_id("b"))] == ["cancelled"]
    await assert_invariants(env.redis, env.namespace)  # (its history's name is in names)
    names = sorted(n.decode() for n in await env.redis.smembers(env.keys.names))
    scripts = Scripts(env.redis, env.keys)
    await trim_history(scripts, names, to_ms(time.time()) + 1000, 0)  # (keep nothing)
    assert await env.redis.hlen(env.keys.history_data) == 0
    assert await env.redis.exists(env.keys.history_of("merge")) == 0
    await assert_invariants(env.redis, env.namespace)


async def test_a_dead_member_retried_by_hand_runs_again_and_the_run_does_not_change(
    env: Env,
) -> None:
    """Its end was handled when it died: the failed run stays failed, its dependent cancelled,
    and no callback runs again (nor on_success, though the member now succeeds)."""
    runs: list[int] = []

    @env.pool.job("flaky")
    async def flaky(job: Job) -> str:
        runs.append(job.attempt)
        if len(runs) == 1:
            raise NonRetryableError("first run fails")
        return "ok"

    wf = Workflow()
    wf.add("flaky", {}, id="a")
    wf.add("merge", {}, id="b", after=["a"])
    wf.on_failure("notify", {"outcome": "failed"})
    wf.on_success("notify", {"outcome": "ok"})
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    before = await run.wait(timeout=5)
    assert before.status == "failed" and before.failed_node == "a"
    assert (before.nodes["a"].state, before.nodes["b"].state) == ("failed", "cancelled")
    client = Client(env.redis, namespace=env.namespace)
    assert await client.retry_dead_job(run.job_id("a"))
    await env.pool.drain(timeout=20)
    assert len(runs) == 2  # it ran again, and succeeded
    info = await client.job(run.job_id("a"))
    assert info is not None and info.status == "finished" and info.result == "ok"
    after = await run.status()
    assert (after.status, after.failed_node) == ("failed", "a")
    assert {n: s.state for n, s in after.nodes.items()} == {"a": "failed", "b": "cancelled"}
    assert "merge" not in env.names()
    assert [a for n, a in env.ran if n == "notify"] == [{"outcome": "failed"}]
    assert await client.job(f"{run.id}!on_success") is None
    await assert_invariants(env.redis, env.namespace, drained=True)
