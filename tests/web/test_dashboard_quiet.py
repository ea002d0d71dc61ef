"""The pools page's Quiet / Resume buttons (web/actions.py pool_verb, admin/pools.py): POSTs with
the CSRF token, the pool acting at its next heartbeat; hidden and refused read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import errands
from errands import Client, WorkerPool
from tests.support.dashboard import eventually, http, make_pool, post


@pytest.fixture
async def pool(redis_url: str, namespace: str) -> AsyncIterator[WorkerPool]:
    p = make_pool(redis_url, namespace, heartbeat_interval=0.1)
    async with p:
        yield p
        p.release_slow.set()  # type: ignore[attr-defined]


async def test_quiet_and_resume_a_pool_from_the_pools_page(
    pool: WorkerPool, client: Client
) -> None:
    async with http(errands.dashboard(client)) as web:
        page = await web.get("/pools")
        assert 'action="/pools/quiet"' in page.text and 'value="' + pool.id + '"' in page.text
        assert (
            await post(web, "/pools/quiet", {"id": pool.id}, with_token=False)
        ).status_code == 403
        assert not await client.redis.exists(client.keys.quiet_requests)
        response = await post(web, "/pools/quiet", {"id": pool.id})
        assert response.status_code == 303 and response.headers["location"] == "/pools"
        await eventually(lambda: _quiet(client, True), "the pool quiet")
        assert pool.quieted
        page = await web.get("/pools")
        assert f"Pool {pool.id}: quiet requested." in page.text
        assert 'action="/pools/resume"' in page.text and 'action="/pools/quiet"' not in page.text
        api = await web.post(
            "/api/pools/resume",
            json={"id": pool.id},
            headers={"x-csrf-token": web.cookies["errands_csrf"]},
        )
        assert api.status_code == 200 and api.json()["data"] is True
        await eventually(lambda: _quiet(client, False), "the pool resumed")
        assert not pool.quieted
        missing = await web.post(
            "/api/pools/quiet",
            json={"id": "nope"},
            headers={"x-csrf-token": web.cookies["errands_csrf"]},
        )
        assert missing.status_code == 404 and "no running pool 'nope'" in missing.text.lower()
        response = await post(web, "/pools/quiet", {"id": "nope"})
        assert response.status_code == 303
        assert "no running pool" in (await web.get("/pools")).text.lower()


async def test_read_only_hides_and_refuses_quiet(pool: WorkerPool, client: Client) -> None:
    async with http(errands.dashboard(client, read_only=True)) as web:
        page = await web.get("/pools")
        assert pool.id in page.text and "/pools/quiet" not in page.text
        assert (await post(web, "/pools/quiet", {"id": pool.id})).status_code == 403
    assert not await client.redis.exists(client.keys.quiet_requests)
    assert not pool.quieted


async def _quiet(client: Client, quiet: bool) -> bool:
    return [p.quiet for p in await client.worker_pools()] == [quiet]
