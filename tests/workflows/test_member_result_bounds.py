"""result() of workflow members: bounded reads for a long dotted
id, callbacks, forgotten members, events of a cascade."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from errands import Client, JobCancelledError, JobNotFoundError, Workflow
from errands.admin import events

from .conftest import Env


@pytest.fixture
def events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter looks again only when an event of its job comes (no look on a timer)."""
    monkeypatch.setattr(events, "recheck_period", lambda waiters: 3600.0)


async def _hgets(env: Env) -> int:
    stats = await env.redis.info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


async def test_a_long_dotted_id_costs_a_bounded_number_of_reads(env: Env) -> None:
    """A member id is at most 200 characters (members.py member_id), its node at most 120
    (graph.py): an id of 2,001 characters holding 1,000 dots can be no member. lib/wfids.lua
    bounds the same lookup to 121 candidates; result() read one key per dot (1,000 HGETs, keys
    built in O(len**2) characters: a 1 MB id of dots would build ~10**11)."""
    client = Client(env.redis, namespace=env.namespace)
    job_id = "r" + ".x" * 1000
    before = await _hgets(env)
    with pytest.raises(JobNotFoundError):
        await client.result(job_id, timeout=5)
    assert await _hgets(env) - before <= 121
    await client.aclose()


@pytest.mark.parametrize("how", ["destroy", "delete_cancelled_job"])
async def test_a_queued_member_forgotten_by_id_is_cancelled_in_its_run(env: Env, how: str) -> None:
    """A member destroyed or deleted by id while its run is kept: its run records it as
    cancelled, and result() says so (docs/client.md, forgotten jobs: the exception), in words
    that do not claim it never ran."""
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")  # (no dependency: queued at once)
    wf.add("work", {"value": 2}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    member = run.job_id("a")
    if how == "destroy":
        assert await client.destroy(member)
    else:
        assert await client.cancel(member) == "cancelled"
        assert await client.delete_cancelled_job(member)
    assert await client.job(member) is None
    with pytest.raises(JobCancelledError, match="its workflow run records it"):
        await client.result(member, timeout=1)
    await client.aclose()


async def test_a_cascade_wakes_the_waiter_of_a_member_two_steps_down(
    env: Env, events_only: None
) -> None:
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"fail": True}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])
    wf.add("work", {"value": 3}, id="c", after=["b"])
    run = await env.enqueuer.enqueue_workflow(wf)
    waiter = asyncio.create_task(client.result(run.job_id("c"), timeout=30))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await env.pool.drain(timeout=20)
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(waiter, 10)
    await client.aclose()


async def test_a_plain_dotted_id_next_to_a_run_is_not_a_member(env: Env) -> None:
    """A plain job 'R.zz' (no node zz in run R) that ended and kept no record: not found, not
    cancelled; and one that is queued waits."""
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow(id="R")
    wf.add("work", {"fail": True}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    await env.pool.drain(timeout=20)
    assert (await run.status()).nodes["b"].state == "cancelled"
    job = await env.enqueuer.enqueue("work", {"value": 5}, job_id="R.zz")
    assert job is not None
    with pytest.raises(TimeoutError):
        await client.result("R.zz", timeout=0.3)
    assert await client.destroy("R.zz")
    with pytest.raises(JobNotFoundError):
        await client.result("R.zz", timeout=1)
    await client.aclose()


async def test_member_state_with_a_stale_run_read(env: Env) -> None:
    """The caller read the member's run, then it was released (a job now) or ended: waiting
    (the next look finds it), never None (JobNotFoundError) for a member that exists."""
    from errands.admin.workflows import member_state

    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    stale: dict[str, Any] = {
        n: await env.redis.hget(env.keys.workflow_of, run.job_id(n)) for n in "ab"
    }
    assert await member_state(env.redis, env.keys, run.job_id("a"), stale["a"]) == "waiting"
    await env.pool.drain(timeout=20)
    for n in "ab":
        assert await env.redis.hget(env.keys.workflow_of, run.job_id(n)) is None
        assert await member_state(env.redis, env.keys, run.job_id(n), stale[n]) == "waiting"
        assert await member_state(env.redis, env.keys, run.job_id(n), None) is None
