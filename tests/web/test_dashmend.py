"""Dashboard mends after an operator's walk: limits in words on the Queues page."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

import errands
from errands import Client, Concurrency, Enqueuer, Rate
from tests.support.dashboard import http


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[Client]:
    async with Client.from_url(redis_url, namespace=namespace) as c:
        yield c


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    async with Enqueuer.from_url(redis_url, namespace=namespace) as e:
        yield e


@pytest.fixture
async def web(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    async with http(errands.dashboard(client)) as h:
        yield h


def _row(page: str, name: str) -> str:
    start = page.index(f'<tr data-queue="{name}">')
    return html.unescape(page[start : page.index("</tr>", start)])


async def test_queues_show_the_limit_that_binds_not_infinity(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    for name in ("send_sms", "charge", "plain"):
        assert await enqueuer.enqueue(name) is not None
    await client.set_limits("send_sms", [Rate(2, timedelta(seconds=10))], strict=None)
    await client.set_limits("charge", [Concurrency(1, per_partition=True)], strict=None)
    for path in ("/queues", "/"):
        page = (await web.get(path)).text
        assert "0 / rate 2/10 s</td>" in _row(page, "send_sms"), path
        assert "0 / 1 per partition</td>" in _row(page, "charge"), path
        assert "0 / ∞</td>" in _row(page, "plain"), path
    api = (await web.get("/api/queues")).json()["running_limits"]
    assert api["send_sms"] == "rate 2/10 s"
    # the queue's own page: the same words
    page = html.unescape((await web.get("/queues/send_sms")).text)
    assert "rate 2/10 s" in page and "rate=2/10000ms" not in page
