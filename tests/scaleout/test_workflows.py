"""Workflows against one Redis server and against a 3-master Redis Cluster (``topology_url``):
each failure policy with a dead member, cancel mid-run, dynamic add, and a run's keys gone
after its linger."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from errands import Client, Enqueuer, Job, NonRetryableError, WorkerPool, Workflow
from errands.store.keys import Keys


def make_pool(url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(
        url, namespace=namespace, concurrency=8, heartbeat_interval=0.25, dead_timeout=1.0
    )

    @pool.job("work")
    async def work(job: Job, fail: bool = False, grow: bool = False) -> str:
        if fail:
            raise NonRetryableError("boom")
        if grow:
            await job.workflow.add("work", {}, id="grown", before=["merge"])
        return job.workflow_node or ""

    @pool.job("merge")
    async def merge(job: Job) -> list[str]:
        return sorted(await job.dependency_results())

    @pool.job("hang")
    async def hang(job: Job) -> None:
        await asyncio.sleep(60)

    return pool


@pytest.mark.parametrize("policy", ["fail", "continue", "ignore"])
async def test_policies_with_a_dead_member(topology_url: str, namespace: str, policy: str) -> None:
    wf = Workflow(linger=0.5)
    wf.add("work", {"grow": policy != "fail"}, id="a")  # (a cancelled merge takes no more)
    wf.add("work", {"fail": True}, id="b")
    wf.add("merge", {}, id="merge", after=["a", "b"], on_dependency_failure=policy)  # type: ignore[arg-type]
    wf.on_success("work", {})
    wf.on_failure("work", {})
    async with (
        Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer,
        make_pool(topology_url, namespace) as pool,
    ):
        run = await enqueuer.enqueue_workflow(wf)
        status = await run.wait(timeout=30)
        await pool.drain(timeout=30)
        merge = status.nodes["merge"]
        if policy == "fail":
            assert (status.status, merge.state) == ("failed", "cancelled")
        else:
            assert (status.status, merge.state) == ("succeeded", "succeeded")
            assert merge.result == ["a", "b", "grown"]
        keys: Any = enqueuer.redis
        for _ in range(100):
            left = [k async for k in keys.scan_iter(match=Keys(namespace).workflow(run.id) + "*")]
            if not left:
                break
            await asyncio.sleep(0.05)
        assert left == []


async def test_cancel_mid_run(topology_url: str, namespace: str) -> None:
    wf = Workflow()
    wf.add("hang", {}, id="h")
    wf.add("work", {}, id="after", after=["h"])
    async with (
        Enqueuer.from_url(topology_url, namespace=namespace) as enqueuer,
        Client.from_url(topology_url, namespace=namespace) as client,
        make_pool(topology_url, namespace),
    ):
        run = await enqueuer.enqueue_workflow(wf)
        for _ in range(200):
            info = await client.job(run.job_id("h"))
            if info is not None and info.status == "in_progress":
                break
            await asyncio.sleep(0.05)
        assert await client.workflow(run.id).cancel()
        status = await run.wait(timeout=20)
        assert status.status == "cancelled"
        assert {n.state for n in status.nodes.values()} == {"cancelled"}
        assert [r.status for r in await client.workflows()] == ["cancelled"]
