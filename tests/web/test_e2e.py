"""End to end in a real headless Chromium (driven over the DevTools protocol) against a live
pool and the dashboard served by uvicorn: a failing job appears in Retry then Dead, "retry" moves
it back, pausing a queue stops it, "run now" on a schedule enqueues a job, destructive actions
ask for confirmation, the live refresh works, and the browser reports no CSP violation or
script error. Screenshots go to $ERRANDS_DASHBOARD_SCREENSHOTS (e.g. docs/img) when set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("websockets", reason="the E2E tests need the websockets package")
uvicorn = pytest.importorskip("uvicorn", reason="the E2E tests need uvicorn")

import errands  # noqa: E402
from errands import Client, Enqueuer, FixedBackoff, Job, JobStatus, WorkerPool  # noqa: E402
from tests.support.cdp import Browser, chromium, find_chromium  # noqa: E402
from tests.support.dashboard import eventually  # noqa: E402

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary (apt-get install -y chromium, or set ERRANDS_CHROMIUM)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _started(server, task), "uvicorn to start", 15)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def _started(server: Any, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return bool(server.started)


def build_pool(redis_url: str, namespace: str) -> WorkerPool:
    pool = WorkerPool.from_url(redis_url, namespace=namespace, concurrency=6, shutdown_grace=1)
    calls: dict[str, int] = {}
    hold = asyncio.Event()
    pool.hold = hold  # type: ignore[attr-defined]

    @pool.job("send_invoice")
    async def send_invoice(job: Job) -> str:
        return f"sent {job.args.get('invoice')}"

    @pool.job("charge_card", max_fails=2, backoff=FixedBackoff(3600))
    async def charge_card(job: Job) -> str:
        calls[job.id] = calls.get(job.id, 0) + 1
        if calls[job.id] <= 2:
            raise ConnectionError("payment gateway timed out")
        return "charged"

    @pool.job("resize_image", max_fails=1)
    async def resize_image(job: Job) -> None:
        raise ValueError("unsupported format: " + str(job.args.get("format")))

    @pool.job("rebuild_index")
    async def rebuild_index(job: Job) -> None:
        await job.checkin("42% of shards")
        await hold.wait()

    return pool


async def status(client: Client, job_id: str) -> str | None:
    info = await client.job(job_id)
    return info.status if info is not None else None


async def test_dashboard_in_a_real_browser(redis_url: str, namespace: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    shots = Path(os.environ.get("ERRANDS_DASHBOARD_SCREENSHOTS") or tmp_path)
    pool = build_pool(redis_url, namespace)
    client = Client.from_url(redis_url, namespace=namespace)
    enqueuer = Enqueuer.from_url(redis_url, namespace=namespace)
    app = errands.dashboard(client, refresh=1)
    try:
        async with pool, serve(app) as base, chromium(CHROMIUM) as browser:
            await browser.open_page()
            await seed(enqueuer, client)
            await failing_job_goes_to_retry_then_dead_and_back(
                browser, base, client, enqueuer, shots
            )
            await pausing_a_queue_stops_it(browser, base, client, enqueuer, shots)
            await run_a_schedule_now(browser, base, client, shots)
            await delete_asks_for_confirmation(browser, base, client, enqueuer)
            await other_pages(browser, base, shots)
            assert not browser.problems, browser.problems
            pool.hold.set()  # type: ignore[attr-defined]
    finally:
        await enqueuer.aclose()
        await client.aclose()


async def seed(enqueuer: Enqueuer, client: Client) -> None:
    """Some history, two busy slots and a scheduled job, so that pages have content."""
    for i in range(12):
        await enqueuer.enqueue("send_invoice", {"invoice": 1000 + i, "customer": f"c-{i}"})
    for shard in ("eu", "us"):
        await enqueuer.enqueue("rebuild_index", {"region": shard})
    await enqueuer.enqueue("send_invoice", {"invoice": 2000}, delay=3600)
    await client.add_schedule("weekly-digest", "send_invoice", "0 8 * * mon", {"invoice": 0})
    await eventually(lambda: _busy(client, 2), "two busy slots")


async def _busy(client: Client, n: int) -> bool:
    return len(await client.workers()) == n


async def failing_job_goes_to_retry_then_dead_and_back(
    b: Browser, base: str, client: Client, enqueuer: Enqueuer, shots: Path
) -> None:
    job = await enqueuer.enqueue("charge_card", {"order": 77, "api_key": "sk_live_abcdef"})
    await eventually(lambda: _is(client, job.id, JobStatus.RETRYING), "the job to be retrying")
    await b.goto(base + "/retry")
    row = f'tr[data-id="{job.id}"]'
    assert "payment gateway timed out" in await b.text(row)
    await b.screenshot(shots / "dashboard-retry.png")
    await b.click_and_wait(f'{row} form[action$="/retry/retry"] button')
    await eventually(lambda: _is(client, job.id, JobStatus.DEAD), "the job to die")
    await b.goto(base + "/dead")
    await b.wait_for(f"document.querySelector('{row}') !== null")
    await b.screenshot(shots / "dashboard-dead.png")
    await b.goto(f"{base}/jobs/{job.id}")
    detail = await b.text("#content")
    assert "sk_live_abcdef" not in detail and "[redacted]" in detail
    assert "payment gateway timed out" in detail
    await b.screenshot(shots / "dashboard-job.png")
    await b.goto(base + "/dead")
    await b.click_and_wait(f'{row} form[action$="/dead/retry"] button')
    assert await client.result(job.id, timeout=10) == "charged"
    assert "queued" in await b.text("#flash")


async def _is(client: Client, job_id: str, wanted: str) -> bool:
    return await status(client, job_id) == wanted


async def pausing_a_queue_stops_it(
    b: Browser, base: str, client: Client, enqueuer: Enqueuer, shots: Path
) -> None:
    await b.goto(base + "/queues")
    row = 'tr[data-queue="send_invoice"]'
    await b.click_and_wait(f'{row} form[action$="/queues/pause"] button')
    assert await client.paused() == {"send_invoice"}
    assert "paused" in await b.text(row)
    job = await enqueuer.enqueue("send_invoice", {"invoice": 3000})
    await asyncio.sleep(0.5)
    assert await status(client, job.id) == JobStatus.QUEUED
    # the live refresh shows the job waiting on the paused queue
    await b.wait_for(f"document.querySelector('{row}').cells[1].innerText.trim() === '1'")
    await b.screenshot(shots / "dashboard-queues.png")
    await b.click_and_wait(f'{row} form[action$="/queues/unpause"] button')
    assert await client.result(job.id, timeout=10) == "sent 3000"
    assert await client.paused() == set()


async def run_a_schedule_now(b: Browser, base: str, client: Client, shots: Path) -> None:
    await b.goto(base + "/schedules")
    fields = {"name": "nightly-report", "job": "send_invoice", "spec": "0 3 * * *"}
    fields["args"] = '{"invoice": 9000}'
    for name, value in fields.items():
        await b.eval(
            "document.getElementById('add-schedule').elements.namedItem("
            f"{json.dumps(name)}).value = {json.dumps(value)}"
        )
    await b.click_and_wait('#add-schedule button[type="submit"]')
    row = 'tr[data-schedule="nightly-report"]'
    assert "IDLE" in await b.text(row)
    await b.click_and_wait(f'{row} form[action$="/schedules/run"] button')
    info = await client.schedule("nightly-report")
    assert info.last_job_id is not None
    assert await client.result(info.last_job_id, timeout=10) == "sent 9000"
    await b.goto(base + "/schedules")
    await b.wait_for(f"document.querySelector('{row}').innerText.includes('finished')")
    await b.screenshot(shots / "dashboard-schedules.png")


async def delete_asks_for_confirmation(
    b: Browser, base: str, client: Client, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue("resize_image", {"format": "<svg onload=alert(1)>"})
    await eventually(lambda: _is(client, job.id, JobStatus.DEAD), "the image job to die")
    await b.goto(base + "/dead")
    row = f'tr[data-id="{job.id}"]'
    assert "<svg onload=alert(1)>" in await b.text(row)  # shown as text, not markup
    assert await b.eval("document.querySelectorAll('#content svg').length") == 0
    await b.click_and_wait(f'{row} form[action$="/dead/delete"] button')
    assert b.dialogs and "Delete this job?" in b.dialogs[-1]
    assert await status(client, job.id) is None


async def other_pages(b: Browser, base: str, shots: Path) -> None:
    await b.goto(base + "/")
    await b.wait_for("document.body.dataset.refreshed !== undefined", 10)  # live refresh ran
    assert "processed" in await b.text("#content")
    await b.screenshot(shots / "dashboard-overview.png")
    await b.goto(base + "/history")
    await b.screenshot(shots / "dashboard-history.png", height=440)
    await b.goto(base + "/busy")
    assert "42% of shards" in await b.text("#content")
    await b.screenshot(shots / "dashboard-busy.png")
    for page in ("pools", "redis"):
        await b.goto(f"{base}/{page}")
        assert "Traceback" not in await b.text("#content")
