"""Review probe of d9c590a on a Redis Cluster: result() of a waiting member (the MULTI over its
run's keys), then JobCancelledError once its run is cancelled (the split lookup)."""

from __future__ import annotations

import asyncio

import pytest

from errands import Client, Enqueuer, JobCancelledError, JobNotFoundError, Workflow


async def test_result_of_a_waiting_member(topology_url: str, namespace: str) -> None:
    wf = Workflow()
    wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=["a"])
    async with (
        Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer,
        Client.from_url(topology_url, namespace=namespace) as client,
    ):
        run = await enqueuer.enqueue_workflow(wf)
        with pytest.raises(TimeoutError, match="has not ended"):
            await client.result(run.job_id("b"), timeout=0.3)
        waiter = asyncio.create_task(client.result(run.job_id("b"), timeout=10))
        await asyncio.sleep(0.2)
        assert await run.cancel()
        with pytest.raises(JobCancelledError):
            await waiter
        with pytest.raises(JobCancelledError):
            await client.result(run.job_id("b"), timeout=1)
        with pytest.raises(JobNotFoundError):
            await client.result(run.job_id("zz"), timeout=1)
