"""End to end in a real headless Chromium, continued (issue 17): a page of a hostile site
whose name resolves to this host is refused (DNS rebinding), every spelling of a secret key and
URL passwords stay hidden, the live refresh keeps a half-filled form, the focus, the scroll
position and a closed traceback, a text filter narrows the Dead page, lists fit a phone's
width, and the staleness banner appears when Redis stops and leaves when it returns (the 503
page recovering by itself). Screenshots go to $ERRANDS_DASHBOARD_SCREENSHOTS when set."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("websockets", reason="the E2E tests need the websockets package")
pytest.importorskip("uvicorn", reason="the E2E tests need uvicorn")

import errands
from errands import Client, Enqueuer, JobStatus
from errands.store.devserver import RedisServer
from tests.support.cdp import REBIND_HOST, Browser, chromium, find_chromium
from tests.support.dashboard import eventually
from tests.web.test_e2e import build_pool, seed, serve
from tests.web.test_hardening import DSN, SPELLINGS

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary (apt-get install -y chromium, or set ERRANDS_CHROMIUM)",
)


async def _status(client: Client, job_id: str, wanted: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == wanted


async def test_dashboard_keeps_work_and_hides_secrets(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
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
            await rebinding_is_refused(browser, base, client)
            dead = await every_spelling_is_hidden(browser, base, client, enqueuer)
            await live_refresh_keeps_work(browser, base, enqueuer, dead)
            await times_switch_to_local(browser, base, dead)
            await a_filter_narrows_the_dead_page(browser, base, client, enqueuer, shots)
            await lists_fit_a_phone(browser, base, shots)
            await activity_is_charted(browser, base, shots)
            assert not browser.problems, browser.problems
            pool.hold.set()  # type: ignore[attr-defined]
    finally:
        await enqueuer.aclose()
        await client.aclose()


async def rebinding_is_refused(b: Browser, base: str, client: Client) -> None:
    port = base.rsplit(":", 1)[1]
    hostile = f"http://{REBIND_HOST}:{port}"
    await b.goto(hostile + "/api/dead")
    assert "DNS rebinding" in await b.text()
    status = await b.eval(
        "fetch('/api/queues/pause', {method: 'POST', headers: {'content-type': "
        "'application/json'}, body: JSON.stringify({name: 'send_invoice'})})"
        ".then(r => r.status)"
    )
    assert status == 403
    assert await b.eval("fetch('/api/csrf').then(r => r.status)") == 403
    assert await client.paused() == set()
    b.problems.clear()  # the browser logs the refused loads as errors


async def every_spelling_is_hidden(
    b: Browser, base: str, client: Client, enqueuer: Enqueuer
) -> str:
    job = await enqueuer.enqueue("resize_image", {**SPELLINGS, "format": DSN})
    await eventually(lambda: _status(client, job.id, JobStatus.DEAD), "the job to die")
    for path in (f"/jobs/{job.id}", "/dead", "/history", f"/api/jobs/{job.id}"):
        await b.goto(base + path)
        shown = await b.text()
        for key, value in SPELLINGS.items():
            assert value not in shown, (path, key)
        assert "s3cr3t-dsn" not in shown, path
    await b.goto(f"{base}/jobs/{job.id}")
    assert "postgres://[redacted]@db.internal/app" in await b.text("#content")
    return job.id


async def live_refresh_keeps_work(b: Browser, base: str, enqueuer: Enqueuer, dead: str) -> None:
    # a half-filled filter with the focus in it, and the page scrolled: a new attempt shows
    # up in the table, the rest stays as the user left it
    await b.viewport(1100, 400)
    await b.goto(base + "/history")
    await b.eval(
        "(() => { const q = document.querySelector('#filters input[name=q]');"
        " q.focus(); q.value = 'half-typ'; q.setSelectionRange(8, 8); window.scrollTo(0, 250);"
        " return true; })()"
    )
    job = await enqueuer.enqueue("send_invoice", {"invoice": 4242})
    await b.wait_for(f"document.querySelector('#history').innerText.includes({json.dumps(job.id)})")
    assert await b.eval("document.querySelector('#filters input[name=q]').value") == "half-typ"
    assert await b.eval("document.activeElement.name") == "q"
    assert await b.eval("window.scrollY") == 250
    # a traceback the user closed stays closed across refreshes
    await b.goto(f"{base}/jobs/{dead}")
    await b.eval("document.querySelector('details.tb').open = false")
    before = await b.eval("document.body.dataset.refreshed || '0'")
    await b.wait_for(f"(document.body.dataset.refreshed || '0') !== {json.dumps(before)}")
    await b.wait_for(f"(document.body.dataset.refreshed || '0') !== {json.dumps(before)}")
    assert await b.eval("document.querySelector('details.tb').open") is False
    await b.viewport(1100, 680)


async def a_filter_narrows_the_dead_page(
    b: Browser, base: str, client: Client, enqueuer: Enqueuer, shots: Path
) -> None:
    alpha = await enqueuer.enqueue("resize_image", {"format": "png-alpha"})
    beta = await enqueuer.enqueue("resize_image", {"format": "gif-beta"})
    for job in (alpha, beta):
        await eventually(lambda j=job: _status(client, j.id, JobStatus.DEAD), "the job to die")
    await b.goto(base + "/dead")
    rows = "document.querySelectorAll('#jobs tbody tr').length"
    assert await b.eval(rows) >= 3
    await b.eval("document.querySelector('#filters input[name=q]').value = 'alpha'")
    await b.click_and_wait('#filters button[type="submit"]')
    assert await b.eval(rows) == 1
    assert alpha.id in await b.text("#jobs") and beta.id not in await b.text("#jobs")
    assert "1 matching" in await b.text("h1")
    await b.screenshot(shots / "dashboard-dead-filtered.png", height=420)
    # tick the rows shown and delete them: confirmed first, then gone
    await b.eval("document.getElementById('pick-all').click()")
    assert await b.eval("document.querySelectorAll('input[name=ids]:checked').length") == 1
    await b.click_and_wait('#bulk button[value="delete"]')
    assert b.dialogs[-1] == "Delete the 1 selected jobs?"
    assert await client.job(alpha.id) is None and await client.job(beta.id) is not None


async def times_switch_to_local(b: Browser, base: str, job_id: str) -> None:
    await b.send("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    await b.goto(f"{base}/jobs/{job_id}")
    first = "document.querySelector('time.abs').textContent"
    assert (await b.eval(first)).endswith(" UTC")
    await b.eval("document.getElementById('localtime').click()")
    assert (await b.eval(first)).endswith(" GMT+9")
    await b.goto(f"{base}/jobs/{job_id}")  # remembered by the browser
    assert (await b.eval(first)).endswith(" GMT+9")
    await b.eval("document.getElementById('localtime').click()")
    assert (await b.eval(first)).endswith(" UTC")


async def lists_fit_a_phone(b: Browser, base: str, shots: Path) -> None:
    await b.viewport(390, 844, mobile=True)
    try:
        for page in ("/", "/queues", "/dead", "/history", "/busy", "/schedules", "/pools"):
            await b.goto(base + page)
            width = await b.eval("document.documentElement.scrollWidth")
            assert width <= 390, (page, width)
        await b.goto(base + "/dead")
        await b.screenshot(shots / "dashboard-phone.png")
    finally:
        await b.viewport(1100, 680)


async def activity_is_charted(b: Browser, base: str, shots: Path) -> None:
    """The pool adds its counts every 5 s: the live refresh brings them onto the chart."""
    await b.viewport(1100, 760)
    await b.goto(base + "/activity")
    await b.wait_for("document.querySelectorAll('#activity-chart rect').length > 0", 20)
    await b.wait_for("document.querySelector('#latency tr[data-queue=send_invoice]') !== null")
    await b.screenshot(shots / "dashboard-activity.png")
    await b.viewport(1100, 680)


async def test_staleness_banner_and_the_503_page(tmp_path: Path) -> None:
    """Redis stops under an open page: the banner says so and goes away when it returns; a
    page opened while Redis is down (503) reloads by itself once it is back; when the
    dashboard's server stops, the banner says that instead."""
    assert CHROMIUM is not None
    shots = Path(os.environ.get("ERRANDS_DASHBOARD_SCREENSHOTS") or tmp_path)
    server = RedisServer().start()
    client = Client.from_url(server.url, namespace="stale")
    try:
        app = errands.dashboard(client, refresh=0.5)
        async with chromium(CHROMIUM) as b, contextlib.AsyncExitStack() as stack:
            base = await stack.enter_async_context(serve(app))
            await b.open_page()
            await b.goto(base + "/queues")
            await b.wait_for("document.body.dataset.refreshed !== undefined")
            assert await b.eval("document.getElementById('stale').hidden") is True
            server.kill()
            await b.wait_for("document.getElementById('stale').hidden === false")
            assert "Redis is unavailable" in await b.text("#stale")
            await b.screenshot(shots / "dashboard-stale.png", height=260)
            await b.goto(base + "/dead")  # drawn while Redis is down
            assert "503" in await b.text("h1")
            assert "tries again" in await b.text("#retrying")
            server.start()
            await b.wait_for("document.querySelector('h1').innerText.startsWith('Dead')", 20)
            await b.goto(base + "/queues")
            server.kill()
            await b.wait_for("document.getElementById('stale').hidden === false")
            server.start()
            await b.wait_for("document.getElementById('stale').hidden === true", 20)
            csp = [p for p in b.problems if "Content Security Policy" in p or "Refused" in p]
            assert not csp, csp
            # the dashboard server itself goes away: the banner says so
            await stack.aclose()
            await b.wait_for("document.getElementById('stale').hidden === false")
            assert "server cannot be reached" in await b.text("#stale")
    finally:
        await client.aclose()
        server.cleanup()
