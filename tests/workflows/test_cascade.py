"""A member's end walks its dependents a page at a time: a 10,000-way fan-out whose root fails
costs each script call at most a few hundred dependents; the rest waits on the work list
(``wfwork``), continued by ``wf_cascade.lua`` (pools call it at each requeuer pass, drain and
``WorkflowRun.cancel`` until it returns 0), and ends exactly as one unbounded call did."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Job, NonRetryableError, WorkerPool, Workflow
from errands.store.keys import Keys
from errands.store.records import Settle
from errands.store.scripts import Scripts
from errands.workflows.store import WorkflowScripts
from tests.support.invariants import assert_invariants
from tests.support.resend import snapshot

WIDTH = 10_000
MAX_COMMANDS = 3_000  # per script call: a page of 200 dependents, ~12 commands each at most


async def commands(redis: Redis) -> int:
    """Commands the server ran so far (those inside scripts included)."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def counted(redis: Redis, call: object) -> tuple[object, int]:
    before = await commands(redis)
    reply = await call  # type: ignore[misc]
    return reply, await commands(redis) - before - 2  # the INFO before and the script call


def fan_out() -> Workflow:
    wf = Workflow("fan-out", id="big", linger=600)
    root = wf.add("work", {}, id="root")
    for i in range(WIDTH):
        wf.add("work", {"i": i}, id=f"c{i}", after=[root])
    wf.on_failure("notify", {})
    return wf


async def test_a_failing_root_of_a_10k_fan_out_is_walked_a_page_per_call(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    run = await enqueuer.enqueue_workflow(fan_out())
    scripts = Scripts(redis, keys)
    await scripts.cancel(run.job_id("nothing"), "work", 1, 1)  # (loads the script)
    reply, used = await counted(redis, scripts.cancel(run.job_id("root"), "work", 1, 60_000))
    assert reply == "cancelled"
    left = await snapshot(redis, namespace)
    await scripts.cancel(run.job_id("root"), "work", 1, 60_000)  # a re-send changes nothing
    assert await snapshot(redis, namespace) == left
    per_call = [used]
    wf = WorkflowScripts(redis, keys)
    while True:
        took, used = await counted(redis, wf.cascade())
        per_call.append(used)
        if not took:
            break
    print(f"\ncommands per call: first {per_call[0]}, max {max(per_call)}, calls {len(per_call)}")
    assert max(per_call) <= MAX_COMMANDS, per_call
    assert len(per_call) > 10  # paged indeed
    status = await run.status()
    assert status.status == "failed" and status.failed_node == "root"
    assert status.counts() == {"cancelled": WIDTH + 1}
    assert status.nodes["c9999"].error == {
        "error": "dependency root cancelled",
        "node": "root",
    }
    assert await redis.zcard(keys.queue("work")) == 0
    assert await redis.zrange(keys.queue("notify"), 0, -1) == [f"{run.id}!on_failure".encode()]
    assert await redis.exists(keys.workflows_work) == 0
    for part in ("", "open", "out", "nodes", "res"):
        key = keys.workflow(run.id, part)
        assert 0 < await redis.pttl(key) <= 600_000 or not await redis.exists(key), part
    assert await redis.exists(keys.workflow(run.id, "in"), keys.workflow(run.id, "env")) == 0
    await assert_invariants(redis, namespace)


def pool_for(redis: Redis, namespace: str, ran: list[str]) -> WorkerPool:
    pool = WorkerPool(redis, namespace=namespace, concurrency=32)

    @pool.job("work")
    async def work(job: Job) -> str:
        ran.append(job.id)
        if job.args.get("fail"):
            raise NonRetryableError("boom")
        return "ok"

    @pool.job("notify")
    async def notify(job: Job) -> None:
        ran.append(job.id)

    return pool


async def test_a_walk_left_by_a_dead_pool_is_finished_by_another(
    redis: Redis, namespace: str
) -> None:
    """The root's end walked its first 200 dependents, then its pool died: the work list is in
    Redis, and a pool started later walks the rest (fan-out, then fan-in on `merge`)."""
    keys = Keys(namespace)
    wf = Workflow("crash", id="crash")
    root = wf.add("work", {}, id="root")
    parts = [wf.add("work", {}, id=f"c{i}", after=[root]) for i in range(1_000)]
    wf.add("work", {}, id="merge", after=parts)
    wf.on_failure("notify", {})
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    assert await Scripts(redis, keys).cancel(run.job_id("root"), "work", 1, 60_000) == "cancelled"
    assert await redis.zcard(keys.workflows_work) > 0  # as the dead pool left it
    assert (await run.status()).status == "running"
    await assert_invariants(redis, namespace)  # mid-walk, consistent
    items = await redis.zrange(keys.workflows_work, 0, -1, withscores=True)
    await redis.delete(keys.workflows_work)  # the checker sees a walk lost...
    with pytest.raises(AssertionError, match="ended and no walk of its dependents is left"):
        await assert_invariants(redis, namespace)
    await redis.zadd(keys.workflows_work, dict(items))  # ...put back
    ran: list[str] = []
    await pool_for(redis, namespace, ran).drain(timeout=60)
    status = await run.wait(timeout=10)
    assert status.status == "failed" and status.failed_node == "root"
    assert status.counts() == {"cancelled": 1_002}
    assert status.nodes["merge"].error["error"].startswith("dependency c")
    assert ran == [f"{run.id}!on_failure"]
    assert await redis.exists(keys.workflows_work) == 0
    await assert_invariants(redis, namespace, drained=True)


async def test_a_wide_fan_out_is_released_past_the_first_page(redis: Redis, namespace: str) -> None:
    """1,000 dependents of one member: the first 200 released by its ack, the rest by the
    pools' requeuer passes; each runs once, the fan-in once after all of them."""
    wf = Workflow("wide", id="wide")
    root = wf.add("work", {}, id="root")
    parts = [wf.add("work", {}, id=f"c{i}", after=[root]) for i in range(1_000)]
    wf.add("work", {}, id="merge", after=parts)
    wf.add("work", {"fail": True}, id="sink", after=[root], on_dependency_failure="continue")
    wf.on_failure("notify", {})
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    ran: list[str] = []
    await pool_for(redis, namespace, ran).drain(timeout=120)
    status = await run.wait(timeout=10)
    assert status.status == "failed" and status.failed_node == "sink"
    assert status.counts() == {"succeeded": 1_002, "failed": 1}
    assert len(ran) == len(set(ran)) == 1_004  # each once
    assert ran[-1] == f"{run.id}!on_failure"
    last_part = max(ran.index(run.job_id(f"c{i}")) for i in range(1_000))
    assert ran.index(run.job_id("merge")) > last_part
    await assert_invariants(redis, namespace, drained=True)


async def test_the_acking_pool_continues_a_wide_fan_out_at_once(
    redis: Redis, namespace: str
) -> None:
    """The pool whose ack left dependents on the work list continues them right after the ack,
    not at its next requeuer pass (300 s away here)."""
    wf = Workflow("wide", id="prompt")
    root = wf.add("work", {}, id="root")
    for i in range(1_000):
        wf.add("work", {}, id=f"c{i}", after=[root])
    ran: list[str] = []
    pool = pool_for(redis, namespace, ran)
    pool.poll_interval = 300.0
    await pool.start()
    try:
        run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
        status = await run.wait(timeout=30)
    finally:
        await pool.stop()
    assert status.status == "succeeded" and len(ran) == 1_001


async def test_a_member_ended_while_waiting_on_10k_parents_loses_its_edges_a_page_per_call(
    redis: Redis, namespace: str
) -> None:
    """A 10,000-way fan-in cancelled while it waits: its end removed its 10,000 in edges in the
    one call. Now 200 go with it, the rest from the work list, at most 1,000 per call."""
    keys = Keys(namespace)
    wf = Workflow("fan-in", id="fanin")
    parents = [wf.add("work", {}, id=f"p{i}") for i in range(WIDTH)]
    wf.add("work", {}, id="sink", after=parents)
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    edges = keys.workflow(run.id, "in")
    assert await redis.zcard(edges) == WIDTH
    scripts, wf_scripts = Scripts(redis, keys), WorkflowScripts(redis, keys)
    await scripts.cancel(run.job_id("nothing"), "work", 1, 1)  # (loads the scripts)
    assert await wf_scripts.cascade() == 0
    reply, used = await counted(redis, scripts.cancel(run.job_id("sink"), "work", 1, 60_000))
    assert reply == "cancelled"
    removed = [WIDTH - await redis.zcard(edges)]
    per_call = [used]
    await assert_invariants(redis, namespace)  # edges left, their removal on the work list
    items = await redis.zrange(keys.workflows_work, 0, -1)
    assert items == [f"edges sink  {run.id}".encode()]
    await redis.delete(keys.workflows_work)  # the checker sees the removal lost...
    with pytest.raises(AssertionError, match="waits no more and no removal of its edges"):
        await assert_invariants(redis, namespace)
    await redis.zadd(keys.workflows_work, {items[0]: 1})  # ...put back
    while True:
        left = await redis.zcard(edges)
        took, used = await counted(redis, wf_scripts.cascade())
        if not took:
            break
        removed.append(left - await redis.zcard(edges))
        per_call.append(used)
    print(f"\nedges removed per call: {removed}; commands per call: {per_call}")
    assert removed[0] == 200 and max(removed[1:]) == 1_000, removed
    assert max(per_call) <= 80, per_call  # (the cancel: 70, 44 its key checks; a page: 27, 20)
    assert await redis.zcard(edges) == 0 and await redis.exists(keys.workflows_work) == 0
    status = await run.status()
    assert status.status == "running" and status.nodes["sink"].state == "cancelled"
    await assert_invariants(redis, namespace)


async def _fail_a_parent_of_a_member_ended_while_waiting(
    redis: Redis, namespace: str, cascade_first: bool
) -> object:
    """A 300-way fan-in into `sink`, cancelled while it waits (200 of its in edges go with it,
    the last 100, sink<z among them, wait on the work list), then its parent z fails: with the
    work list's removal run before, or not yet. Returns the run's `failed` mark."""
    keys = Keys(namespace)
    wf = Workflow("fan-in", id=f"fanin-{cascade_first}")
    parents = [wf.add("work", {}, id="z")] + [
        wf.add("work", {}, id=f"a{i:03d}") for i in range(299)
    ]
    wf.add("work", {}, id="sink", after=parents)
    wf.add("work", {}, id="tail", after=["sink"], on_dependency_failure="continue")
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    scripts, wf_scripts = Scripts(redis, keys), WorkflowScripts(redis, keys)
    await scripts.heartbeat("p", b"{}", 60_000, mode="register")
    assert await scripts.cancel(run.job_id("sink"), "work", 1, 60_000) == "cancelled"
    assert await redis.zscore(keys.workflow(run.id, "in"), "sink<z") is not None
    while cascade_first and await wf_scripts.cascade():
        pass
    assert run.job_id("z") in [j.id for j in await scripts.fetch("p", 1, 400, [("work", 0)])]
    settle = Settle(run.job_id("z"), "work", "dead", keys.dead, 2, 1, error=b'{"m":"boom"}')
    assert await scripts.settle("p", settle)
    await assert_invariants(redis, namespace)
    while await wf_scripts.cascade():
        pass
    await assert_invariants(redis, namespace)
    return (await redis.hgetall(keys.workflow(run.id))).get(b"failed")


async def test_a_parent_failing_after_its_dependent_ended_while_waiting_fails_no_run(
    redis: Redis, namespace: str
) -> None:
    """The failure of z reaches no dependent (sink had ended): the run is not marked failed,
    whether the edge sink<z was still to remove (work list not yet run) or gone. It was marked
    failed (on_failure instead of on_success) when z's walk found that edge."""
    assert await _fail_a_parent_of_a_member_ended_while_waiting(redis, namespace, True) is None
    assert await _fail_a_parent_of_a_member_ended_while_waiting(redis, namespace, False) is None
