"""Helpers shared by the dashboard tests: an HTTP client talking to the ASGI app in-process
(from a chosen peer address), CSRF-aware POSTs, and a pool with well-known jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from starlette.types import ASGIApp

from errands import FixedBackoff, Job, WorkerPool
from tests.support import procs

T = TypeVar("T")
LOCAL = ("127.0.0.1", 40123)
BASE = "http://127.0.0.1:5040"
XSS = "<script>alert(1)</script>"
SECRET = "hunter2-very-secret"


def http(app: ASGIApp, peer: tuple[str, int] = LOCAL, base: str = BASE) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url=base, follow_redirects=False)


async def csrf_token(client: httpx.AsyncClient, root: str = "") -> str:
    token = client.cookies.get("errands_csrf")
    if token is None:
        response = await client.get(root + "/api/csrf")
        if response.status_code == 401:  # token auth, signed out: the sign-in page sets it
            response = await client.get(root + "/login")
        assert response.status_code == 200, response.text
        token = client.cookies.get("errands_csrf")
    assert token
    return token


async def post(
    client: httpx.AsyncClient,
    path: str,
    data: Mapping[str, str] | None = None,
    *,
    root: str = "",
    headers: Mapping[str, str] | None = None,
    with_token: bool = True,
) -> httpx.Response:
    """A form POST as a browser on the same origin sends it."""
    form = dict(data or {})
    if with_token:
        form["csrf"] = await csrf_token(client, root)
    sent = {"sec-fetch-site": "same-origin", "origin": BASE, **(headers or {})}
    return await client.post(root + path, data=form, headers=sent)


async def eventually(
    probe: Callable[[], Awaitable[T]], what: str, timeout: float = 10.0, interval: float = 0.02
) -> T:
    return await procs.eventually(probe, timeout, what, interval)


def make_pool(redis_url: str, namespace: str, **options: Any) -> WorkerPool:
    """Jobs: ``ok`` (returns 42 after a checkin), ``boom`` (dies at once, naming its password),
    ``flaky`` (fails, retried an hour later), ``slow`` (runs until cancelled), and a job whose
    name is an XSS payload."""
    pool = WorkerPool.from_url(
        redis_url, namespace=namespace, concurrency=8, shutdown_grace=1, **options
    )
    release = asyncio.Event()
    pool.release_slow = release  # type: ignore[attr-defined]

    @pool.job("ok")
    async def ok(job: Job) -> int:
        await job.checkin("halfway")
        return 42

    @pool.job("boom", max_fails=1)
    async def boom(job: Job) -> None:
        raise ValueError(f"bad password {job.args.get('password')}")

    @pool.job("flaky", max_fails=5, backoff=FixedBackoff(3600))
    async def flaky(job: Job) -> None:
        raise RuntimeError("flaky failed")

    @pool.job("slow")
    async def slow(job: Job) -> None:
        await job.checkin("working on it")
        await release.wait()

    @pool.job(XSS, max_fails=1)
    async def xss(job: Job) -> None:
        raise ValueError(XSS)

    return pool
