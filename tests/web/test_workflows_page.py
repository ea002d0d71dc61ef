"""The dashboard's workflow pages: the list of runs, one run with its members, cancelling it,
and a member's job page naming its run."""

from __future__ import annotations

import errands
from errands import Client, Enqueuer, Workflow
from tests.support.dashboard import XSS, http, post


async def test_workflow_pages(client: Client, redis_url: str, namespace: str) -> None:
    wf = Workflow(XSS)
    wf.add("ok", {}, id="a")
    wf.add("ok", {}, id="b", after=["a"])
    async with Enqueuer.from_url(redis_url, namespace=namespace, strict=None) as enqueuer:
        run = await enqueuer.enqueue_workflow(wf)
    async with http(errands.dashboard(client)) as web:
        page = await web.get("/workflows")
        assert page.status_code == 200 and run.id in page.text
        assert XSS not in page.text  # escaped
        assert 'href="/workflows"' in page.text  # in the navigation
        one = await web.get(f"/workflows/{run.id}")
        assert one.status_code == 200
        assert 'data-node="b"' in one.text and "waiting" in one.text and "released" in one.text
        data = (await web.get(f"/api/workflows/{run.id}")).json()
        assert data["run"]["status"] == "running"
        assert {n["id"]: n["state"] for n in data["nodes"]} == {"a": "released", "b": "waiting"}
        job = await web.get(f"/jobs/{run.job_id('a')}")
        assert f'href="/workflows/{run.id}"' in job.text
        response = await post(web, "/workflows/cancel", {"id": run.id})
        assert response.status_code == 303
        assert (await client.workflow(run.id).status()).status == "cancelled"
        assert (await web.get("/workflows/nope")).status_code == 404
        assert (await web.get("/api/workflows")).json()["runs"][0]["status"] == "cancelled"
