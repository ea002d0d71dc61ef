"""The job page of a queued job while a flow-control key its waiting reason reads holds another
type (a hand edit): the page is shown, its "Waiting for" naming the key and its repair (before:
Redis' bare WRONGTYPE, and no page)."""

from __future__ import annotations

import html

import httpx
from redis.asyncio import Redis

from errands import Client, Enqueuer


async def test_the_job_page_names_a_rate_wait_key_of_another_type(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient, redis: Redis
) -> None:
    job = await enqueuer.enqueue("sms", {}, partition="A")
    assert job is not None
    key = client.keys.partitions_waiting("sms")
    await redis.set(key, "hand edit")
    page = await web.get(f"/jobs/{job.id}")
    assert page.status_code == 200, page.text
    shown = html.unescape(page.text)
    assert f"unknown: {key} holds another type" in shown
    assert f"({key} is a string; repair: " in shown
