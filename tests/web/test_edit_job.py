"""The job page's edit form (Client.update_job): new args and priority for a waiting job; a job
with hidden (redacted) args is not offered its args, so the mask never replaces a secret."""

from __future__ import annotations

import httpx

from errands import Client, Enqueuer
from tests.support.dashboard import SECRET, post


async def test_the_job_page_edits_a_waiting_job(
    client: Client, web: httpx.AsyncClient, redis_url: str, namespace: str
) -> None:
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        job = await enqueuer.enqueue("report", {"day": 1}, delay=3600)
        secret = await enqueuer.enqueue("login", {"password": SECRET, "user": "ann"}, delay=3600)
    assert job is not None and secret is not None
    page = await web.get(f"/jobs/{job.id}")
    assert page.status_code == 200 and 'action="/jobs/edit"' in page.text
    assert '<textarea name="args" rows="4">{"day": 1}</textarea>' in page.text
    response = await post(web, "/jobs/edit", {"id": job.id, "args": '{"day": 2}', "priority": "4"})
    assert response.status_code in (303, 302), response.text
    info = await client.job(job.id)
    assert info is not None and (info.args, info.priority, info.edits) == ({"day": 2}, 4, 1)
    page = await web.get(f"/jobs/{job.id}")
    assert "edited" in page.text  # in the attempts (history) table

    hidden = await web.get(f"/jobs/{secret.id}")
    assert SECRET not in hidden.text and "some values are hidden" in hidden.text
    await post(web, "/jobs/edit", {"id": secret.id, "args": "", "priority": "2"})
    info = await client.job(secret.id)
    assert info is not None and info.args == {"password": SECRET, "user": "ann"}
    assert info.priority == 2

    bad = await post(web, "/jobs/edit", {"id": job.id, "args": "[1]"})
    assert "JSON object" in bad.text or bad.status_code in (302, 303, 400)
    info = await client.job(job.id)
    assert info is not None and info.args == {"day": 2}
