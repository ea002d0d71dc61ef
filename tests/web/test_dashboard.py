"""The web dashboard's pages and actions, in-process (httpx ASGI transport), against a private
Redis and a real worker pool. Security defaults are in test_dashboard_security.py."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import errands
from errands import Client, Enqueuer, JobStatus, WorkerPool
from errands.cli.commands import build_parser
from errands.cli.dashboard import parse_listen
from errands.periodic.store import make_periodic
from tests.support.dashboard import SECRET, XSS, eventually, http, post


@pytest.fixture
async def enqueuer(redis_url: str, namespace: str) -> AsyncIterator[Enqueuer]:
    e = Enqueuer.from_url(redis_url, namespace=namespace)
    yield e
    await e.aclose()


async def dead_ids(client: Client) -> list[str]:
    return [j.id for j in (await client.dead_jobs()).items]


async def test_every_page_renders_live_data(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    ok = await enqueuer.enqueue("ok", {"n": 1})
    await enqueuer.enqueue("boom", {"password": SECRET})
    await enqueuer.enqueue("flaky", {})
    slow = await enqueuer.enqueue("slow", {})
    later = await enqueuer.enqueue("ok", {"n": 2}, delay=3600)
    await eventually(lambda: dead_ids(client), "a dead job")
    await eventually(lambda: _retrying(client, 1), "a retrying job")
    await eventually(lambda: client.workers(), "a busy slot")
    pages = {
        "/": ["Throughput", "processed", "ok", "slow"],
        "/queues": ["ok", "flaky", "Pause"],
        "/queues/ok": ["Queue", "ok"],
        "/busy": [slow.id, "working on it"],
        "/pools": [pool.id],
        "/scheduled": [later.id, "Run now"],
        "/retry": ["flaky failed", "Retry now"],
        "/dead": ["bad password", "Retry all"],
        "/history": [ok.id, "finished"],
        "/history?name=boom": ["boom"],
        f"/history?id={ok.id}": [ok.id],
        f"/jobs/{ok.id}": ["42", "finished"],
        f"/jobs/{slow.id}": ["Cancel", "in progress"],
        "/schedules": ["Add a schedule"],
        "/redis": ["version", "used memory"],
    }
    for path, expected in pages.items():
        response = await web.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        for text in expected:
            assert text in response.text, (path, text)
    assert (await web.get("/jobs/nope")).status_code == 404
    assert (await web.get("/queues/nope")).status_code == 404
    found = await web.get("/jobs", params={"id": ok.id})
    assert found.status_code == 303 and found.headers["location"] == f"/jobs/{ok.id}"
    static = await web.get("/static/dashboard.js")
    assert static.status_code == 200 and "DOMParser" in static.text


async def test_the_pools_page_shows_a_quiet_pool(pool: WorkerPool, web: httpx.AsyncClient) -> None:
    assert ">quiet</span>" not in (await web.get("/pools")).text
    await pool.quiet()
    page = (await web.get("/pools")).text
    [row] = [r for r in page.split("<tr>") if pool.id in r]
    assert ">quiet</span>" in row, row
    await pool.resume()
    assert ">quiet</span>" not in (await web.get("/pools")).text


async def test_json_api_mirrors_the_pages(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    for i in range(5):
        await enqueuer.enqueue("ok", {"n": i})
    boom = await enqueuer.enqueue("boom", {"password": SECRET})
    await eventually(lambda: dead_ids(client), "a dead job")
    await eventually(lambda: _processed(client, 5), "five processed")
    overview = (await web.get("/api/overview")).json()
    assert overview["totals"]["processed"] >= 1 and overview["totals"]["failed"] == 1
    assert len(overview["throughput"]) == 60
    assert sum(m["ended"] for m in overview["throughput"]) >= 2
    assert sum(m["died"] for m in overview["throughput"]) == 1
    dead = (await web.get("/api/dead")).json()["page"]
    assert dead["total"] == 1 and dead["items"][0]["id"] == boom.id
    assert dead["items"][0]["error"]["error"].startswith("ValueError")
    job = (await web.get(f"/api/jobs/{boom.id}")).json()
    assert job["job"]["status"] == JobStatus.DEAD and job["attempts"][0]["status"] == "dead"
    for path in ("queues", "busy", "pools", "scheduled", "retry", "history", "schedules", "redis"):
        response = await web.get(f"/api/{path}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "application/json"
        ), path
    missing = await web.get("/api/jobs/nope")
    assert missing.status_code == 404 and missing.json()["status"] == 404


async def test_pause_and_unpause_a_queue(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    assert await enqueuer.enqueue("ok", {}) is not None  # job names are listed once known
    response = await post(web, "/queues/pause", {"name": "ok"})
    assert response.status_code == 303 and response.headers["location"] == "/queues"
    assert await client.paused() == {"ok"}
    page = await web.get("/queues")
    assert "Paused ok." in page.text and "Resume" in page.text
    job = await enqueuer.enqueue("ok", {})
    await asyncio.sleep(0.3)
    assert (await client.job(job.id)).status == JobStatus.QUEUED  # type: ignore[union-attr]
    response = await post(web, "/queues/unpause", {"name": "ok", "next": "/"})
    assert response.headers["location"] == "/"
    assert await client.result(job.id, timeout=10) == 42
    api = await web.post(
        "/api/queues/pause",
        json={"name": "ok"},
        headers={"x-csrf-token": web.cookies["errands_csrf"]},
    )
    assert api.status_code == 200 and api.json()["ok"] is True
    assert await client.paused() == {"ok"}


async def test_dead_set_actions(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    await client.pause("boom")
    jobs = [await enqueuer.enqueue("boom", {"i": i}) for i in range(4)]
    await client.unpause("boom")
    await eventually(lambda: _count(client, 4), "four dead jobs")
    await client.pause("boom")  # retried jobs stay visible on the queue
    first, second = jobs[0].id, jobs[1].id
    assert (await post(web, "/dead/retry", {"id": first})).status_code == 303
    assert (await client.job(first)).status == JobStatus.QUEUED  # type: ignore[union-attr]
    assert (await post(web, "/dead/delete", {"id": second})).status_code == 303
    assert second not in await dead_ids(client)
    gone = await post(web, "/dead/retry", {"id": second, "next": "/dead"})
    assert gone.headers["location"] == "/dead"
    assert "No dead job" in (await web.get("/dead")).text
    await post(web, "/dead/retry-all")
    assert await dead_ids(client) == []
    await client.unpause("boom")
    await eventually(lambda: _count(client, 3), "three dead again")
    await post(web, "/dead/delete-all")
    assert await dead_ids(client) == []


async def _processed(client: Client, n: int) -> bool:
    return (await client.stats()).get("processed", 0) >= n


async def _count(client: Client, n: int) -> bool:
    return (await client.dead_jobs()).total == n


async def test_retry_and_scheduled_set_actions(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    flaky = [await enqueuer.enqueue("flaky", {"i": i}) for i in range(3)]
    await eventually(lambda: _retrying(client, 3), "three retrying")
    await post(web, "/retry/retry", {"id": flaky[0].id})
    await eventually(lambda: _fails(client, flaky[0].id, 2), "second failure")
    await post(web, "/retry/delete", {"id": flaky[1].id})
    assert await client.job(flaky[1].id) is None
    await post(web, "/retry/retry-all")
    # retry-all re-queues both jobs left; wait for both to be back in the set,
    # or delete-all can miss one still running (it is not in the set then)
    await eventually(lambda: _fails(client, flaky[0].id, 3), "retry all, first")
    await eventually(lambda: _fails(client, flaky[2].id, 2), "retry all")
    await post(web, "/retry/delete-all")
    assert (await client.retry_jobs()).total == 0

    later = [await enqueuer.enqueue("ok", {"i": i}, delay=3600) for i in range(3)]
    await post(web, "/scheduled/retry", {"id": later[0].id})
    assert await client.result(later[0].id, timeout=10) == 42
    await post(web, "/scheduled/delete", {"id": later[1].id})
    assert await client.job(later[1].id) is None
    response = await post(web, "/scheduled/retry-all")
    assert response.status_code == 303
    assert await client.result(later[2].id, timeout=10) == 42
    await enqueuer.enqueue("ok", {}, delay=3600)
    await post(web, "/scheduled/delete-all")
    assert (await client.scheduled_jobs()).total == 0


async def _retrying(client: Client, n: int) -> bool:
    return (await client.retry_jobs()).total == n


async def _fails(client: Client, job_id: str, n: int) -> bool:
    info = await client.job(job_id)
    return info is not None and info.fails == n and info.status == JobStatus.RETRYING


async def test_job_detail_actions(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    slow = await enqueuer.enqueue("slow", {})
    await eventually(lambda: client.workers(), "slow job running")
    response = await post(web, "/jobs/cancel", {"id": slow.id})
    assert response.headers["location"] == f"/jobs/{slow.id}"
    await eventually(lambda: _status(client, slow.id, JobStatus.CANCELLED), "cancelled")
    assert "cancelled" in (await web.get(f"/jobs/{slow.id}")).text
    boom = await enqueuer.enqueue("boom", {})
    await eventually(lambda: _status(client, boom.id, JobStatus.DEAD), "dead")
    await client.pause("boom")
    await post(web, "/jobs/retry", {"id": boom.id})
    assert await _status(client, boom.id, JobStatus.QUEUED)
    await post(web, "/jobs/delete", {"id": boom.id})
    assert await client.job(boom.id) is None
    missing = await post(web, "/jobs/cancel", {"id": "nope"})
    assert missing.status_code == 303
    assert "No job" in (await web.get(missing.headers["location"])).text


async def _status(client: Client, job_id: str, status: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == status


async def test_schedule_actions(pool: WorkerPool, client: Client, web: httpx.AsyncClient) -> None:
    form = {"name": "nightly", "job": "ok", "spec": "0 3 * * *", "args": '{"n": 7}'}
    assert (await post(web, "/schedules/add", {**form, "enabled": "1"})).status_code == 303
    page = await web.get("/schedules")
    assert "nightly" in page.text and "IDLE" in page.text and "Schedule nightly added." in page.text
    await post(web, "/schedules/disable", {"name": "nightly"})
    assert not (await client.schedule("nightly")).enabled
    await post(web, "/schedules/enable", {"name": "nightly"})
    assert (await client.schedule("nightly")).enabled
    await post(web, "/schedules/run", {"name": "nightly"})
    info = await client.schedule("nightly")
    assert info.last_job_id is not None
    assert await client.result(info.last_job_id, timeout=10) == 42
    bad = await post(web, "/schedules/add", {**form, "spec": "not a spec"})
    # (back to the page with the form's fields but the args: tests/web/test_dashmend.py)
    assert bad.headers["location"].startswith("/schedules?draft=1&name=nightly&")
    assert "flash error" in (await web.get("/schedules")).text
    await post(web, "/schedules/add", {**form, "args": "[1]"})
    assert "Args must be a JSON object" in (await web.get("/schedules")).text
    await post(web, "/schedules/delete", {"name": "nightly"})
    assert await client.schedules() == []


async def test_a_schedule_no_pool_registers_is_shown_stale(
    pool: WorkerPool, client: Client, web: httpx.AsyncClient
) -> None:
    """A deploy removed "nightly" from the code: the page showed its (past) next fire time."""
    nightly = make_periodic("0 3 * * *", "ok", name="nightly")
    await client.redis.hset(client.keys.code_schedules, "nightly", nightly.to_json())
    await client.redis.zadd(client.keys.code_schedules_live, {"nightly": 1_767_225_660_000})
    page = await web.get("/schedules")
    assert ">stale</span>" in page.text and "It comes back" not in page.text
    await post(web, "/schedules/delete", {"name": "nightly"})
    assert await client.schedules() == []


async def test_mounted_under_a_prefix(pool: WorkerPool, client: Client, enqueuer: Enqueuer) -> None:
    outer = Starlette(routes=[Mount("/jobs", app=errands.dashboard(client))])
    async with http(outer) as web:
        page = await web.get("/jobs/queues")
        assert page.status_code == 200
        assert 'href="/jobs/static/dashboard.css"' in page.text
        assert 'action="/jobs/queues/pause"' in page.text or "No job names" in page.text
        assert "Path=/jobs" in page.headers["set-cookie"]
        response = await post(web, "/queues/pause", {"name": "ok"}, root="/jobs")
        assert response.status_code == 303 and response.headers["location"] == "/jobs/queues"
        assert await client.paused() == {"ok"}
        assert (await web.get("/jobs/static/dashboard.css")).status_code == 200


async def test_dashboard_from_a_url(redis_url: str, namespace: str) -> None:
    app = errands.dashboard(redis_url, namespace=namespace, token="t0ken")
    async with http(app) as web:
        response = await web.get("/api/redis", headers={"authorization": "Bearer t0ken"})
        assert response.json()["namespace"] == namespace
    await app.state.client.aclose()


def test_cli_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_listen("127.0.0.1:5040") == ("127.0.0.1", 5040)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(errands.ErrandsError):
        parse_listen("nope")
    args = build_parser().parse_args(
        ["dashboard", "--token", "x", "--trusted-proxy", "10.0.0.1", "--redact", "ssn"]
    )
    assert (args.token, args.trusted_proxy, args.redact) == ("x", ["10.0.0.1"], ["ssn"])
    assert args.listen == "127.0.0.1:5040"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dashboard", "--token", "x", "--basic-auth", "a:b"])
    monkeypatch.setenv("ERRANDS_DASHBOARD_BASIC_AUTH", "admin:pw")
    assert build_parser().parse_args(["dashboard"]).basic_auth == "admin:pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_cli(
    args: list[str], env: dict[str, str], cwd: str | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """``python -m errands dashboard ARGS`` listening on a free loopback port."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "errands",
        "dashboard",
        *args,
        "--listen",
        f"127.0.0.1:{port}",
        env={**os.environ, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return proc, port


async def listening(proc: asyncio.subprocess.Process, web: httpx.AsyncClient) -> httpx.Response:
    """The first answer of the dashboard's /api/redis (with ``web``'s headers)."""

    async def up() -> httpx.Response | None:
        assert proc.returncode is None, "the dashboard exited"
        try:
            return await web.get("/api/redis")
        except httpx.TransportError:
            return None

    return await eventually(up, "the dashboard to listen", 20, 0.1)


async def stopped(proc: asyncio.subprocess.Process) -> str:
    proc.terminate()
    return (await asyncio.wait_for(proc.communicate(), 10))[0].decode()


async def test_cli_serves_the_dashboard(redis_url: str, namespace: str) -> None:
    env = {"ERRANDS_DASHBOARD_TOKEN": "s3cret-token"}
    proc, port = await serve_cli(["--redis", redis_url, "--namespace", namespace], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as web:
            refused = await listening(proc, web)
            assert refused.status_code == 401
            ok = await web.get("/api/redis", headers={"authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200 and ok.json()["namespace"] == namespace
            assert "server" not in ok.headers
    finally:
        output = await stopped(proc)
    assert "s3cret-token" not in output
    assert re.search(r"errands dashboard on http://127\.0\.0\.1:\d+/ \(token\)", output)


APP = """
import os
from errands import WorkerPool

pool = WorkerPool.from_url(os.environ["APP_REDIS_URL"], namespace="fromapp")
"""


async def test_cli_serves_the_dashboard_of_an_app(tmp_path: Path, redis_url: str) -> None:
    # the README's `python -m errands dashboard --app jobs:pool`: the app's Redis and namespace
    (tmp_path / "jobs.py").write_text(APP)
    async with Enqueuer.from_url(redis_url, namespace="fromapp") as enqueuer:
        await enqueuer.enqueue("send_email", {"address": "a@example.com"})
    env = {"APP_REDIS_URL": redis_url, "REDIS_URL": "redis://127.0.0.1:9/0"}  # (ignored)
    proc, port = await serve_cli(["--app", "jobs:pool"], env, cwd=str(tmp_path))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as web:
            ok = await listening(proc, web)  # (loopback: no credentials needed)
            assert ok.status_code == 200 and ok.json()["namespace"] == "fromapp"
            page = await web.get("/queues")
            assert page.status_code == 200 and "send_email" in page.text
    finally:
        output = await stopped(proc)
    assert "namespace 'fromapp'" in output and "loopback only" in output, output


def test_xss_name_is_a_valid_job_name() -> None:
    from errands.store.keys import check_job_name

    assert check_job_name(XSS) == XSS
