"""The dashboard shows a queue's limits and partitions, and why a queued job waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

import errands
from errands import Client, Concurrency, Enqueuer, Job, Rate, WorkerPool
from tests.support.dashboard import http

from .support import until


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        yield c


@pytest.fixture
async def web(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with http(errands.dashboard(client)) as h:
        yield h


async def test_queue_page_lists_partitions_and_job_page_the_reason(
    redis_url: str, namespace: str, client: Client, web: httpx.AsyncClient
) -> None:
    release = asyncio.Event()
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=4)
    limits = [Concurrency(1, per_partition=True), Rate(100, per=timedelta(minutes=1))]

    @pool.job("charge", limits=limits)
    async def charge(job: Job) -> None:
        await release.wait()

    async with Enqueuer.from_url(redis_url, namespace=namespace) as enq:
        for _ in range(3):
            await enq.enqueue("charge", {}, partition="cust:<b>1")
        last = await enq.enqueue("charge", {}, partition="cust:<b>1")
        assert last is not None
        async with pool:
            await until(lambda: client.workers(), timeout=5)
            page = await web.get("/queues/charge")
            assert page.status_code == 200
            assert "Partitions" in page.text and "cust:&lt;b&gt;1" in page.text  # escaped
            assert "1 per partition" in page.text and "rate 100/1 min" in page.text
            api = (await web.get("/api/queues/charge")).json()
            assert api["partitions"]["items"][0]["queued"] == 3
            assert api["limits"]["code"][1]["per"] == 60.0
            job_page = await web.get(f"/jobs/{last.id}")
            assert "busy (1 running)" in job_page.text
            release.set()
