"""What an operator walking the dashboard met (a walk with a realistic pool): the job page's
attempt count, the words of a cancel, the pager of the lists read soonest first, and a schedule
added for a job name no pool serves."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import errands
from errands import Client, Enqueuer, JobStatus, WorkerPool, Workflow
from errands.web import messages
from tests.support.dashboard import eventually, post


def attempts_cell(html: str) -> str:
    found = re.search(r'<td id="attempts-made">([^<]*)</td>', html)
    assert found, html
    return found.group(1)


async def _status(client: Client, job_id: str, status: str) -> bool:
    info = await client.job(job_id)
    return info is not None and info.status == status


async def _recorded(client: Client, job_id: str, n: int) -> bool:
    return len(await client.history_job(job_id)) == n


async def test_the_job_page_counts_every_attempt(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    # a dead job retried, that dies again: two attempts, not the current run's one
    job = await enqueuer.enqueue("boom", {"n": 1})
    assert job is not None
    await eventually(lambda: _status(client, job.id, JobStatus.DEAD), "dead")
    assert await client.retry_dead_job(job.id)
    await eventually(lambda: _recorded(client, job.id, 2), "a second attempt recorded")
    await eventually(lambda: _status(client, job.id, JobStatus.DEAD), "dead again")
    page = (await web.get(f"/jobs/{job.id}")).text
    assert attempts_cell(page) == "2 (1 failed since its retry, 1 before it)"
    assert (await web.get(f"/api/jobs/{job.id}")).json()["attempts_made"] == 2

    # a running job cancelled: its attempt happened (the history shows it), not "0"
    slow = await enqueuer.enqueue("slow")
    assert slow is not None
    await eventually(lambda: _status(client, slow.id, JobStatus.IN_PROGRESS), "running")
    assert attempts_cell((await web.get(f"/jobs/{slow.id}")).text) == "1 (0 failed)"
    await client.cancel(slow.id)
    await eventually(lambda: _recorded(client, slow.id, 1), "the cancelled attempt recorded")
    await eventually(lambda: _status(client, slow.id, JobStatus.CANCELLED), "cancelled")
    assert attempts_cell((await web.get(f"/jobs/{slow.id}")).text) == "1 (0 failed)"

    # a job that never ran, edited once: no attempt
    later = await enqueuer.enqueue("ok", delay=3600)
    assert later is not None
    await post(web, "/jobs/edit", {"id": later.id, "args": '{"day": 2}', "priority": "0"})
    assert attempts_cell((await web.get(f"/jobs/{later.id}")).text) == "0 (0 failed)"


def flash_of(response: httpx.Response) -> str:
    return unquote(response.headers["set-cookie"])


async def test_a_cancel_says_what_happened_in_words(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    waiting = await enqueuer.enqueue("ok", delay=3600)
    slow = await enqueuer.enqueue("slow")
    assert waiting is not None and slow is not None
    await eventually(lambda: _status(client, slow.id, JobStatus.IN_PROGRESS), "running")
    said = flash_of(await post(web, "/jobs/cancel", {"id": waiting.id}))
    assert f"ok|{waiting.id}: cancelled, it will not run." in said
    said = flash_of(await post(web, "/jobs/cancel", {"id": slow.id}))
    assert (
        f"{slow.id}: running; cancel requested, it will not be retried: its pool cancels it" in said
    )
    await eventually(lambda: _status(client, slow.id, JobStatus.CANCELLED), "cancelled")
    said = flash_of(await post(web, "/jobs/cancel", {"id": slow.id}))
    assert f"{slow.id}: not cancelled: it was cancelled already." in said
    api = await web.post(
        "/api/jobs/cancel",
        json={"id": waiting.id},
        headers={"x-csrf-token": web.cookies["errands_csrf"], "sec-fetch-site": "same-origin"},
    )
    assert api.json()["data"] == "already"  # the JSON twin keeps the machine word


def pager_links(page: str) -> list[str]:
    nav = re.search(r'<nav class="pager".*?</nav>', page, re.S)
    assert nav, "no pager"
    return [html.unescape(t).strip() for t in re.findall(r"<a [^>]*>([^<]*)</a>", nav[0])]


async def test_lists_read_soonest_first_page_to_later_jobs_not_older_ones(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    for i in range(45):
        job = await enqueuer.enqueue("report", {"i": i}, delay=3600 + i)
        assert job is not None
        if i % 2:
            await client.cancel(job.id)  # (23 scheduled, 22 cancelled)
    await client.pause("email")
    for i in range(45):
        await enqueuer.enqueue("email", {"i": i})
    assert pager_links((await web.get("/scheduled?page=2")).text) == ["← sooner"]
    assert pager_links((await web.get("/queues/email?page=2")).text) == ["← sooner", "later →"]
    # a list read newest first keeps "newer" and "older"
    assert pager_links((await web.get("/cancelled?page=2")).text) == ["← newer"]


async def test_a_schedule_of_a_job_name_no_pool_serves_is_flagged(
    pool: WorkerPool, client: Client, web: httpx.AsyncClient
) -> None:
    await client.pause("ok")  # (its runs would only wait; keeps the test quiet)
    form = {"job": "ok", "spec": "*/5 * * * *", "args": "{}", "tz": "UTC", "enabled": "on"}
    said = flash_of(await post(web, "/schedules/add", {**form, "name": "fine"}))
    assert "ok|Schedule fine added." in said
    said = flash_of(await post(web, "/schedules/add", {**form, "name": "typo", "job": "okk"}))
    assert "Schedule typo added, but no running pool serves job name 'okk'" in said
    assert "(did you mean 'ok'?): its jobs wait until a pool serves it." in said
    page = (await web.get("/schedules")).text
    typo = re.search(r'<tr data-schedule="typo".*?</tr>', page, re.S)
    fine = re.search(r'<tr data-schedule="fine".*?</tr>', page, re.S)
    assert typo and fine
    assert "not served" in typo[0] and "not served" not in fine[0]
    assert (await web.get("/api/schedules")).json()["unserved"] == ["okk"]


async def test_a_schedule_added_is_said_added_when_the_served_names_cannot_be_read(
    client: Client, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint's read failing (Redis gone after the schedule was stored) leaves the hint out;
    the page said the add failed (an error flash) though the schedule was stored."""

    async def unreachable(*args: object) -> set[str]:
        raise RedisConnectionError("Connection reset by peer")

    monkeypatch.setattr(messages, "served_names", unreachable)
    form = {"job": "okk", "spec": "*/5 * * * *", "args": "{}", "tz": "UTC", "name": "later"}
    said = flash_of(await post(web, "/schedules/add", form))
    assert "ok|Schedule later added." in said, said
    assert [s.name for s in await client.schedules()] == ["later"]


CSS = Path(errands.__file__).parent / "web" / "static" / "dashboard.css"


def _luminance(color: str) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else float(((v + 0.055) / 1.055) ** 2.4)

    r, g, b = (channel(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    x, y = sorted((_luminance(a), _luminance(b)))
    return (y + 0.05) / (x + 0.05)


def test_text_colours_reach_wcag_aa_on_every_background() -> None:
    """The small labels (nav counts, status chips like "paused" and "active", muted text) are
    11 px: 4.5:1 on the chip, page and card backgrounds, light and dark."""
    text = CSS.read_text()
    blocks = re.findall(r":root\s*{([^}]*)}", text)
    assert len(blocks) == 2  # light, then dark
    for block in blocks:
        colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-f]{6})", block))
        for fg in ("fg", "muted", "accent", "ok", "bad", "warn"):
            for bg in ("chip", "bg", "card"):
                if bg in colours:
                    ratio = _contrast(colours[fg], colours[bg])
                    assert ratio >= 4.5, (fg, bg, round(ratio, 2))


def test_numbers_in_tables_are_never_cut() -> None:
    """Every table cell may break anywhere (long ids and args), but not a number or a
    duration: "134ms" showed as "134m" over "s", a pid "1868" over "8"."""
    text = CSS.read_text()
    assert re.search(r"\.grid td\.num\s*{[^}]*overflow-wrap:\s*normal", text)


async def test_the_run_now_buttons_read_as_english(
    client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    for i in range(2):
        await enqueuer.enqueue("report", {"i": i}, delay=3600)
    page = html.unescape((await web.get("/scheduled")).text)
    assert ">Run all now</button>" in page and 'data-confirm="Run all 2 jobs now?"' in page
    assert ">Run selected now</button>" in page
    assert "Run now all" not in page and "Run now selected" not in page


async def _run_status(client: Client, run_id: str, status: str) -> bool:
    return (await client.workflow(run_id).status()).status == status


async def test_a_failed_run_links_the_member_that_failed_it(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    wf = Workflow("import")
    wf.add("ok", {}, id="fetch")
    wf.add("boom", {}, id="parse", after=["fetch"])
    run = await enqueuer.enqueue_workflow(wf)
    await eventually(lambda: _run_status(client, run.id, "failed"), "the run failed")
    page = (await web.get(f"/workflows/{run.id}")).text
    failed_by = re.search(r'<td class="mono" id="failed-by">(.*?)</td>', page, re.S)
    assert failed_by, page
    assert failed_by[1] == f'<a href="/jobs/{run.job_id("parse")}">parse</a>'
    # retrying that member would not resume the run: the job page says so by its Retry button
    member = (await web.get(f"/jobs/{run.job_id('parse')}")).text
    assert ">Retry now</button>" in member and 'id="member-retry"' in member
    assert "its workflow run does not change" in member
    assert 'id="member-retry"' not in (await web.get(f"/jobs/{run.job_id('fetch')}")).text


async def test_the_first_tab_skips_the_navigation(web: httpx.AsyncClient) -> None:
    """About twenty links and controls come before each page's content: the first focusable
    element is a link past them, shown when focused."""
    for path in ("/", "/dead", "/schedules"):
        page = (await web.get(path)).text
        body = page[page.index("<body") :]
        first = re.search(r"<(a|button|input|select|textarea)\b[^>]*>", body)
        assert first and first[0] == '<a class="skip" href="#content">', path
        assert '<main id="content">' in page
    assert re.search(r"\.skip:focus\s*{[^}]*left:", CSS.read_text())


async def test_the_history_of_an_id_prefix_offers_the_ids_it_starts(
    pool: WorkerPool, client: Client, enqueuer: Enqueuer, web: httpx.AsyncClient
) -> None:
    """The header's search takes a prefix; the History's job-id filter read only a whole id,
    and said "No attempt recorded" for a prefix of one with attempts."""
    job = await enqueuer.enqueue("ok")
    assert job is not None
    await eventually(lambda: _recorded(client, job.id, 1), "an attempt recorded")
    page = (await web.get(f"/history?id={job.id[:6]}")).text
    assert "No attempt recorded for this id." in page
    assert f'<a class="mono" href="/history?id={job.id}">{job.id}</a>' in page
    assert (await web.get(f"/api/history?id={job.id[:6]}")).json()["starting"] == [job.id]
    assert 'id="starting"' not in (await web.get(f"/history?id={job.id}")).text


async def test_an_empty_history_still_answers(web: httpx.AsyncClient) -> None:
    for path in ("/history", "/history?name=nothing", "/history?q=nothing", "/history?id=x"):
        page = await web.get(path)
        assert page.status_code == 200 and "No attempt recorded" in page.text, path
        assert 'id="starting"' not in page.text
