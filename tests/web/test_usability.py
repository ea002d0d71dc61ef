"""Finding and handling jobs in the dashboard (issue 17): filters by name and text, job-id
prefix search, bulk actions on selected rows, the Cancelled page, clearing a queue, queues no
pool serves, long values, the nav from one list, labelled times and the self-retrying 503."""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx

import errands
from errands import Client, Enqueuer, JobStatus, WorkerPool
from errands.web.nav import NAV
from tests.support.dashboard import eventually, http, make_pool, post
from tests.support.invariants import assert_invariants


def row_ids(html: str) -> set[str]:
    return set(re.findall(r'<tr data-id="([^"]+)"', html))


async def _dead(client: Client, n: int) -> bool:
    return (await client.dead_jobs()).total == n


async def test_filters_narrow_the_lists(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    a = await enqueuer.enqueue("boom", {"password": "pw-1", "region": "eu-west"})
    b = await enqueuer.enqueue("boom", {"password": "pw-2", "region": "us-east"})
    c = await enqueuer.enqueue(errands_xss(), {"region": "eu-north"})
    await eventually(lambda: _dead(client, 3), "three dead jobs")
    assert row_ids((await web.get("/dead")).text) == {a.id, b.id, c.id}
    assert row_ids((await web.get("/dead?name=boom")).text) == {a.id, b.id}
    assert row_ids((await web.get("/dead?q=EU-")).text) == {a.id, c.id}
    assert row_ids((await web.get("/dead?name=boom&q=eu-")).text) == {a.id}
    assert row_ids((await web.get("/dead?q=bad+password")).text) == {a.id, b.id}  # the error
    # matching looks at redacted data only: a hidden value cannot be probed
    assert row_ids((await web.get("/dead?q=pw-1")).text) == set()
    narrowed = await web.get("/api/dead?name=boom&q=us-")
    assert [j["id"] for j in narrowed.json()["page"]["items"]] == [b.id]
    history = (await web.get("/history?q=us-east")).text
    assert b.id in history and a.id not in history
    assert 'name="q" value="us-east"' in history
    page = (await web.get("/dead?name=boom&q=eu")).text
    assert "Retry all" not in page  # the "all" buttons would ignore the filter


def errands_xss() -> str:
    from tests.support.dashboard import XSS

    return XSS


async def test_find_a_job_by_id_prefix(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    one = await enqueuer.enqueue("ok", {}, job_id="order-1001", delay=3600)
    await enqueuer.enqueue("ok", {}, job_id="order-1002", delay=3600)
    done = await enqueuer.enqueue("ok", {}, job_id="invoice-77")
    assert await client.result(done.id, timeout=10) == 42
    exact = await web.get("/jobs?id=order-1001")
    assert exact.status_code == 303 and exact.headers["location"].endswith("/jobs/order-1001")
    several = await web.get("/jobs?id=order-")
    assert several.status_code == 200
    assert 'href="/jobs/order-1001"' in several.text and 'href="/jobs/order-1002"' in several.text
    finished = await web.get("/jobs?id=invoice")  # found through its recorded attempts
    assert finished.status_code == 303 and finished.headers["location"].endswith("/invoice-77")
    assert (await web.get("/jobs?id=nothing-like-it")).status_code == 404
    assert (await web.get("/jobs?id=order-*")).status_code == 404  # glob characters are text
    assert one.id == "order-1001"


async def test_bulk_actions_on_selected_jobs(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    jobs = [await enqueuer.enqueue("boom", {"n": i}) for i in range(4)]
    await eventually(lambda: _dead(client, 4), "four dead jobs")
    page = (await web.get("/dead")).text
    assert 'form="bulk"' in page and 'id="bulk"' in page and 'id="pick-all"' in page
    body = [("csrf", await _csrf(web)), ("verb", "delete"), ("ids", jobs[0].id)]
    body += [("ids", jobs[1].id), ("next", "/dead")]
    deleted = await web.post(
        "/dead/bulk",
        content=httpx.QueryParams(body).__str__(),
        headers={"content-type": "application/x-www-form-urlencoded",
                 "sec-fetch-site": "same-origin"},
    )  # fmt: skip
    assert deleted.status_code == 303
    assert set(await _dead_ids(client)) == {jobs[2].id, jobs[3].id}
    api = await web.post(
        "/api/dead/bulk",
        json={"verb": "retry", "ids": [jobs[2].id, "no-such-job"]},
        headers={"x-csrf-token": await _csrf(web), "sec-fetch-site": "same-origin"},
    )
    assert api.status_code == 200 and api.json()["data"] == 1
    assert "1 of 2" in api.json()["message"]
    bad = await post(web, "/api/dead/bulk", {"verb": "explode", "ids": jobs[3].id})
    assert bad.status_code == 400
    await assert_invariants(client.redis, client.keys.namespace)


async def _csrf(web: httpx.AsyncClient) -> str:
    from tests.support.dashboard import csrf_token

    return await csrf_token(web)


async def _dead_ids(client: Client) -> list[str]:
    return [j.id for j in (await client.dead_jobs()).items]


async def _status(client: Client, job_id: str, wanted: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == wanted


async def test_cancelled_page_and_clearing_a_queue(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient, redis_url: str, namespace: str
) -> None:
    kept = await enqueuer.enqueue("ok", {"n": 1}, delay=3600)
    gone = await enqueuer.enqueue("ok", {"n": 2}, delay=3600)
    assert await client.cancel(kept.id) == "cancelled"
    assert await client.cancel(gone.id) == "cancelled"
    listed = await web.get("/cancelled")
    assert row_ids(listed.text) == {kept.id, gone.id}
    assert 'id="nav-cancelled"' in listed.text and 'aria-current="page"' in listed.text
    assert (await post(web, "/cancelled/delete", {"id": gone.id})).status_code == 303
    assert await client.job(gone.id) is None
    assert (await post(web, "/cancelled/retry", {"id": kept.id})).status_code == 303
    assert await _status(client, kept.id, JobStatus.QUEUED)
    for i in range(3):
        await enqueuer.enqueue("ok", {"n": i})
    queue = (await web.get("/queues/ok")).text
    assert "Clear queue" in queue and "not served" in queue  # no pool runs: nobody serves ok
    cleared = await post(web, "/queues/clear", {"name": "ok", "next": "/queues/ok"})
    assert cleared.status_code == 303
    assert (await client.queued_jobs("ok")).total == 0
    assert "4 jobs deleted" in unquote(cleared.headers["set-cookie"])  # the flash message
    pool = make_pool(redis_url, namespace)
    async with pool:
        served = (await web.get("/queues")).text
        assert (
            'data-queue="ok"' in served
            and "not served</span>" not in served.split('data-queue="ok"')[1].split("</tr>")[0]
        )
    await assert_invariants(client.redis, namespace)


async def test_long_values_are_cut_with_show_all(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer
) -> None:
    job = await enqueuer.enqueue("boom", {"password": "x" * 50_000})
    await eventually(lambda: _dead(client, 1), "the job to die")
    async with http(errands.dashboard(client, redact=())) as web:  # the error names it
        page = (await web.get(f"/jobs/{job.id}")).text
        assert re.search(r"show all \(50,0\d\d characters\)", page)
        assert 'class="long" id="error"' in page
        listing = (await web.get("/dead")).text
        assert len(listing) < 40_000  # the list shows a brief of the error


async def test_nav_times_and_the_503_page(client: Client, web: httpx.AsyncClient) -> None:
    await client.redis.sadd(client.keys.names, "ok")
    page = (await web.get("/queues")).text
    for item in NAV:
        assert f'id="nav-{item.key}"' in page
    assert 'id="localtime"' in page and 'data-live="nav"' in page and 'id="stale"' in page
    down = errands.dashboard("redis://127.0.0.1:1/0")
    async with http(down) as web_down:
        response = await web_down.get("/dead")
        assert response.status_code == 503 and 'data-retry="5.0"' in response.text
    await down.state.client.aclose()


async def test_a_text_filter_reads_at_most_500_jobs_and_says_so(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    # 501 scheduled jobs, listed soonest first; the first and the last match the filter
    jobs = await enqueuer.enqueue_many(
        [
            ("ok", {"n": i, "tag": "needle" if i in (0, 500) else "hay"}, {"delay": 3600 + i})
            for i in range(501)
        ]
    )
    capped = (await web.get("/scheduled?q=needle")).text
    assert row_ids(capped) == {jobs[0].id}  # the 501st was not read
    assert "Searched the newest 500 jobs." in capped
    assert await client.destroy(jobs[1].id)  # 500 left: all read, no notice
    whole = (await web.get("/scheduled?q=needle")).text
    assert row_ids(whole) == {jobs[0].id, jobs[500].id}
    assert "Searched the newest" not in whole


async def test_bulk_actions_take_at_most_500_jobs(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    jobs = await enqueuer.enqueue_many([("ok", {"n": i}, {"delay": 3600}) for i in range(501)])
    ids = [job.id for job in jobs]
    headers = {"x-csrf-token": await _csrf(web), "sec-fetch-site": "same-origin"}
    for kind in ("scheduled", "dead"):
        refused = await web.post(
            f"/api/{kind}/bulk", json={"verb": "delete", "ids": ids}, headers=headers
        )
        assert refused.status_code == 400, kind
        assert "select at most 500 jobs at once" in refused.text.lower(), refused.text
    assert (await client.scheduled_jobs()).total == 501  # nothing was done
    done = await web.post(
        "/api/scheduled/bulk", json={"verb": "delete", "ids": ids[:500]}, headers=headers
    )
    assert done.status_code == 200 and done.json()["data"] == 500
    assert [job.id for job in (await client.scheduled_jobs()).items] == [ids[500]]
    await assert_invariants(client.redis, client.keys.namespace)
