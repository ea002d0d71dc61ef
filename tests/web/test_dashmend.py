"""Dashboard mends after an operator's walk: limits in words on the Queues page, the
add-schedule form kept after an error, a checkin given a dict, Cancel on
the Busy page (of a pool that is gone too), a workflow run's callbacks."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from urllib.parse import unquote

import httpx

from errands import Client, Concurrency, Enqueuer, Job, JobStatus, Rate, Workflow
from errands.clock import SystemClock
from errands.worker.reaper import Reaper
from tests.support.dashboard import eventually, make_pool, post


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


def _value(page: str, field: str) -> str | None:
    tag = re.search(rf'<input name="{field}"[^>]*>', page)
    assert tag, field
    value = re.search(r' value="([^"]*)"', tag.group(0))
    return None if value is None else html.unescape(value.group(1))


async def test_the_add_schedule_form_keeps_what_was_typed_after_an_error(
    web: httpx.AsyncClient,
) -> None:
    form = {"name": "nightly report", "job": "report", "spec": "*/5 * * * * * *",
            "tz": "Europe/Paris", "args": '{"api_key": "s3cret"}'}  # fmt: skip
    for sent in (form, {**form, "spec": "@daily", "args": "{nope"}):
        refused = await post(web, "/schedules/add", sent)
        assert refused.status_code == 303
        where = refused.headers["location"]
        assert "s3cret" not in where and "nope" not in where and "args" not in where
        page = (await web.get(where)).text
        flash = re.search(r'<div class="flash error" role="status" id="flash">([^<]*)<', page)
        assert flash and flash.group(1), page
        assert _value(page, "name") == "nightly report"
        assert _value(page, "job") == "report"
        assert _value(page, "spec") == sent["spec"]
        assert _value(page, "tz") == "Europe/Paris"
        assert "s3cret" not in page and "args-not-kept" in page
    assert not (await web.get("/api/schedules")).json()["schedules"]
    # a fresh form: empty, UTC, enabled
    page = (await web.get("/schedules")).text
    assert _value(page, "name") is None and _value(page, "tz") == "UTC"
    assert "args-not-kept" not in page


async def test_a_checkin_given_a_dict_shows_json_not_a_python_repr(
    redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    pool = make_pool(redis_url, namespace)
    release = asyncio.Event()

    @pool.job("transcode")
    async def transcode(job: Job) -> None:
        await job.checkin({"progress": "11%", "file": "é.mp4"})
        await release.wait()

    async with pool:
        job = await enqueuer.enqueue("transcode")
        assert job is not None

        async def checked_in() -> bool:
            info = await client.job(job.id)
            return info is not None and info.checkin is not None

        await eventually(checked_in, "a checkin")
        for path in ("/busy", f"/jobs/{job.id}"):
            page = html.unescape((await web.get(path)).text)
            assert '{"progress": "11%", "file": "é.mp4"}' in page, path
            assert "{'progress'" not in page
        release.set()


async def test_the_busy_page_cancels_a_running_job(
    redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    async with make_pool(redis_url, namespace) as pool:
        job = await enqueuer.enqueue("slow")
        assert job is not None

        async def running() -> bool:
            info = await client.job(job.id)
            return info is not None and info.status == JobStatus.IN_PROGRESS

        await eventually(running, "running")
        page = (await web.get("/busy")).text
        row = page[page.index(f"/jobs/{job.id}") :]
        row = row[: row.index("</tr>")]
        form = re.search(r'<form method="post" action="/jobs/cancel"[^>]*>.*?</form>', row, re.S)
        assert form, row
        assert 'data-confirm="Cancel this job?"' in form[0]  # (as the job page's Cancel)
        assert f'name="id" value="{job.id}"' in form[0] and 'name="csrf"' in form[0]
        assert 'name="next" value="/busy"' in form[0]
        refused = await post(web, "/jobs/cancel", {"id": job.id}, with_token=False)
        assert refused.status_code == 403  # (the same CSRF check as every action)
        said = await post(web, "/jobs/cancel", {"id": job.id, "next": "/busy"})
        assert said.status_code == 303 and said.headers["location"].endswith("/busy")
        assert "its pool cancels it within about a second" in unquote(said.headers["set-cookie"])

        async def cancelled() -> bool:
            info = await client.job(job.id)
            return info is not None and info.status == JobStatus.CANCELLED

        await eventually(cancelled, "cancelled")
        pool.release_slow.set()  # type: ignore[attr-defined]


async def test_the_busy_page_cancels_a_job_of_a_pool_that_is_gone_in_true_words(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    """A dead pool's job (its heartbeats stopped, not yet reaped) is listed on Busy with its
    Cancel, answered "running" as a live pool's: the words said "its pool was told to cancel it
    (within about a second)", which no pool hears; the reaper cancels it, not requeues it."""
    scripts = client.scripts
    job = await enqueuer.enqueue("slow", job_id="orphan")
    assert job is not None
    await scripts.heartbeat("gone", b"{}", 60_000, mode="register")
    got = await scripts.fetch("gone", 0, 10, [("slow", 0)])
    assert got is not None and len(got) == 1
    assert f"/jobs/{job.id}" in (await web.get("/busy")).text
    response = await post(web, "/jobs/cancel", {"id": job.id, "next": "/busy"})
    said = unquote(response.headers["set-cookie"])
    assert "if that pool is gone, the reaper does when it takes the pool's jobs back" in said
    await client.redis.zadd(client.keys.pools, {"gone": 1})  # (its last beat long ago)
    reaper = Reaper(scripts, SystemClock(), "me", None, 1.0, 1.0, max_recoveries=3)
    assert await reaper.reap_once() == 1
    info = await client.job(job.id)
    assert info is not None and info.status == JobStatus.CANCELLED


def _callback_row(page: str, kind: str) -> tuple[str, str]:
    row = re.search(rf'<tr data-callback="{kind}">(.*?)</tr>', page, re.S)
    assert row, page
    href = re.search(r'<a href="([^"]*)">', row[1])
    assert href
    return unquote(href[1]), re.sub(r"<[^>]*>", "", row[1])


async def test_the_workflow_page_lists_its_callbacks_with_links(
    redis_url: str, namespace: str, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    async with make_pool(redis_url, namespace) as pool:
        wf = Workflow("import")
        wf.add("ok", {}, id="fetch")
        wf.add("boom", {}, id="parse", after=["fetch"])
        wf.on_success("ok", {})
        wf.on_failure("ok", {"alert": True})
        run = await enqueuer.enqueue_workflow(wf)

        async def alerted() -> bool:
            info = await client.job(f"{run.id}!on_failure")
            return info is not None and info.status == JobStatus.FINISHED

        await eventually(alerted, "the on_failure callback ran")
        page = (await web.get(f"/workflows/{run.id}")).text
        href, text = _callback_row(page, "on_failure")
        assert href == f"/jobs/{run.id}!on_failure" and "finished" in text and "ok" in text
        href, text = _callback_row(page, "on_success")
        assert href == f"/jobs/{run.id}!on_success" and "not run" in text
        api = (await web.get(f"/api/workflows/{run.id}")).json()["callbacks"]
        assert [(c["kind"], c["state"]) for c in api] == [
            ("on_success", None),
            ("on_failure", "finished"),
        ]
        # a running run: its callback waits for the run's end
        wf = Workflow("long")
        wf.add("slow", {}, id="work")
        wf.on_failure("ok", {})
        running = await enqueuer.enqueue_workflow(wf)
        page = (await web.get(f"/workflows/{running.id}")).text
        assert "runs when the run fails" in _callback_row(page, "on_failure")[1]
        pool.release_slow.set()  # type: ignore[attr-defined]
    # a run without callbacks: no section
    bare = Workflow("bare")
    bare.add("ok", {}, id="one")
    page = (await web.get(f"/workflows/{(await enqueuer.enqueue_workflow(bare)).id}")).text
    assert 'id="callbacks"' not in page
