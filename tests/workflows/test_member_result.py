"""``result()`` of a workflow member still waiting for its dependencies: it waits like any
pending job, returns the member's result once it ran, and raises JobCancelledError when the
member ended without running (a failed dependency under policy "fail", its run cancelled)."""

from __future__ import annotations

import asyncio

import pytest

from errands import Client, JobCancelledError, JobFailedError, JobNotFoundError, Workflow
from errands.admin import events

from .conftest import Env


def chain() -> Workflow:
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])
    return wf


@pytest.fixture
def events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter looks again only when an event of its job comes (no look on a timer)."""
    monkeypatch.setattr(events, "recheck_period", lambda waiters: 3600.0)


async def test_result_of_a_waiting_member_returns_once_it_ran(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(chain())
    assert (info := await client.job(run.job_id("b"))) is not None and info.status == "waiting"
    waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=30))
    await asyncio.sleep(0.2)  # (it waits: not JobNotFoundError at its first look)
    assert not waiter.done()
    await env.pool.drain(timeout=20)
    assert await asyncio.wait_for(waiter, 10) == 2
    assert await client.result(run.job_id("b"), timeout=1) == 2
    await client.aclose()


async def test_result_of_a_waiting_member_times_out_while_it_waits(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(chain())
    with pytest.raises(TimeoutError, match="has not ended"):
        await client.result(run.job_id("b"), timeout=0.3)
    await client.aclose()


async def test_a_member_dropped_by_a_failed_dependency_is_cancelled(
    env: Env, events_only: None
) -> None:
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"fail": True}, id="a")
    wf.add("work", {"value": 2}, id="b", after=["a"])  # (policy "fail")
    run = await env.enqueuer.enqueue_workflow(wf)
    waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=30))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await env.pool.drain(timeout=20)
    with pytest.raises(JobCancelledError):  # (woken by its `cancelled` event)
        await asyncio.wait_for(waiter, 10)
    assert (await run.status()).nodes["b"].state == "cancelled"
    with pytest.raises(JobCancelledError):  # (and after the fact)
        await client.result(run.job_id("b"), timeout=1)
    await client.aclose()


async def test_a_waiting_member_of_a_cancelled_run_is_cancelled(
    env: Env, events_only: None
) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(chain())
    waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=30))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await run.cancel()
    with pytest.raises(JobCancelledError):  # (woken by its `cancelled` event)
        await asyncio.wait_for(waiter, 10)
    with pytest.raises(JobCancelledError):
        await client.result(run.job_id("b"), timeout=1)
    await client.aclose()


async def test_result_of_an_unknown_id_is_not_found(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(chain())
    for job_id in ("nope", "no.such.member", run.job_id("zz"), run.id):
        with pytest.raises(JobNotFoundError):
            await client.result(job_id, timeout=5)
    await client.aclose()


async def test_a_waiting_member_cancelled_by_id_is_cancelled(env: Env, events_only: None) -> None:
    client = Client(env.redis, namespace=env.namespace)
    run = await env.enqueuer.enqueue_workflow(chain())
    waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=30))
    await asyncio.sleep(0.2)
    assert await client.cancel(run.job_id("b")) == "cancelled"
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(waiter, 10)
    with pytest.raises(JobCancelledError):
        await client.result(run.job_id("b"), timeout=1)
    await client.aclose()


async def test_result_of_a_waiting_member_that_fails_raises_job_failed(env: Env) -> None:
    client = Client(env.redis, namespace=env.namespace)
    wf = Workflow()
    wf.add("work", {"value": 1}, id="a")
    wf.add("work", {"fail": True}, id="b", after=["a"])
    run = await env.enqueuer.enqueue_workflow(wf)
    waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=30))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await env.pool.drain(timeout=20)
    with pytest.raises(JobFailedError, match="boom"):
        await asyncio.wait_for(waiter, 10)
    await client.aclose()
