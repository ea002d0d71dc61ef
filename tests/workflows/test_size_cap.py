"""A run holds at most MAX_SIZE (50,000) members, dependency edges and callbacks in all: one
script stores a run, linear in its size, and nothing bounded it (a 300,000-member fan-in held
Redis 5.8 s in one call: other clients got BUSY, the caller a timeout for a run that was
stored). Refused before anything is stored by enqueue_workflow, by wf_enqueue.lua before its
first loop over the run, and by wf_add.lua growing a run past it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Workflow
from errands.errors import WorkflowError
from errands.store.keys import Keys
from errands.workflows.enqueue import check_size
from errands.workflows.graph import MAX_SIZE
from errands.workflows.store import Member, WorkflowScripts
from tests.support.resend import snapshot


def member(node: str, *, ready: bool, after: tuple[str, ...] = ()) -> Member:
    deps = ",".join(f'"{d}"' for d in after)
    spec = f'{{"n":"work","f":"fail","p":0,"d":[{deps}]}}'.encode()
    return Member(node, "work", ready, 0, b'{"id":"' + node.encode() + b'"}', spec)


def fan_in(parts: int) -> Workflow:
    wf = Workflow("wide", id="w1")
    wf.add("merge", {}, id="m", after=[wf.add("work", {"i": i}, id=f"p{i}") for i in range(parts)])
    return wf


async def test_enqueue_workflow_refuses_a_run_past_the_cap(redis: Redis, namespace: str) -> None:
    assert MAX_SIZE == 50_000
    wf = fan_in(24_999)  # 25,000 members, 24,999 edges
    wf.on_success("notify", {})
    check_size(wf)  # 50,000 in all: fits
    wf.on_failure("notify", {})
    with pytest.raises(
        WorkflowError,
        match=r"25000 members, 24999 dependency edges and 2 "
        r"callbacks: 50001 in all, more than the 50,000",
    ):
        await Enqueuer(redis, namespace=namespace).enqueue_workflow(wf)
    assert await snapshot(redis, namespace) == {}


async def test_wf_enqueue_refuses_a_run_past_the_cap_before_any_write(
    redis: Redis, namespace: str
) -> None:
    """Called directly (a caller without the check): refused on the counts alone."""
    scripts = WorkflowScripts(redis, Keys(namespace))
    edges = [("a", "a")] * 50_000  # (never read: the counts are refused first)
    with pytest.raises(
        ResponseError,
        match="1 members, 50000 edges and 0 callbacks are more "
        "than 50000 in all: no workflow run was stored",
    ):
        await scripts.enqueue("r1", "wf", 60_000, [member("a", ready=True)], edges, [])
    assert await snapshot(redis, namespace) == {}


async def test_wf_add_refuses_to_grow_a_run_past_the_cap(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [member("a", ready=True), member("b", ready=False, after=("a",))]
    assert await scripts.enqueue("r1", "wf", 60_000, members, [("a", "b")], [])
    # as if 49,996 members had been added since: 49,998 members and one edge
    await redis.hset(keys.workflow("r1"), "size", 49_998)
    before = await snapshot(redis, namespace)
    why = await scripts.add("r1", member("x", ready=False, after=("a",)), ["a"], [])
    assert why == (
        "adding node x would grow workflow run r1 past 50000 members, edges and callbacks in "
        "all (it holds 49999)"
    )
    assert await snapshot(redis, namespace) == before
    assert await scripts.add("r1", member("x", ready=False), [], []) == ""  # 50,000: fits
    assert "would grow workflow run r1 past 50000" in await scripts.add(
        "r1", member("y", ready=False), [], []
    )
    assert await scripts.add("r1", member("x", ready=False), [], []) == ""  # its re-send


async def test_an_add_with_too_many_nodes_is_refused_before_any_write(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts = WorkflowScripts(redis, keys)
    members = [member("a", ready=True), member("b", ready=False, after=("a",))]
    assert await scripts.enqueue("r1", "wf", 60_000, members, [("a", "b")], [])
    before = await snapshot(redis, namespace)
    with pytest.raises(ResponseError, match="50000 after and before nodes"):
        await scripts.add("r1", member("x", ready=False), [], ["b"] * 50_000)
    assert await snapshot(redis, namespace) == before
    wf = Workflow("small")
    wf.add("work", {}, id="a")
    run = await Enqueuer(redis, namespace=namespace).enqueue_workflow(wf)
    with pytest.raises(WorkflowError, match="more than 50,000 after and before nodes"):
        await run.add("work", {}, after=[f"n{i}" for i in range(50_000)])
