"""Workflow members and callbacks publish their `enqueued` event when they go on their queue, as
an enqueued job does: queued at once by the run's enqueue or by ``run.add``, released by their
last dependency's end, a callback enqueued as the run ends. They published none: an events()
stream saw them start out of nowhere."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from errands import Client, Workflow
from errands.admin.events import EventStream

from .conftest import Env


async def until(stream: EventStream, seen: list[dict[str, Any]], event: str, job_id: str) -> None:
    async with asyncio.timeout(10):
        async for e in stream:
            seen.append(e)
            if (e["event"], e["id"]) == (event, job_id):
                return


def order(seen: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["id"]) for e in seen]


async def test_members_and_callbacks_publish_enqueued(env: Env) -> None:
    wf = Workflow()
    wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=["a"])
    wf.on_success("notify", {})
    seen: list[dict[str, Any]] = []
    async with Client(env.redis, namespace=env.namespace).events() as stream:
        run = await env.enqueuer.enqueue_workflow(wf)
        await env.pool.drain(timeout=20)
        callback = run.callback_job_id("on_success")
        await until(stream, seen, "finished", callback)
    events = order(seen)
    jobs = ((run.job_id("a"), "work"), (run.job_id("b"), "work"), (callback, "notify"))
    for job_id, name in jobs:
        assert Counter(events)[("enqueued", job_id)] == 1, (job_id, events)
        assert events.index(("enqueued", job_id)) < events.index(("started", job_id))
        assert {"event": "enqueued", "id": job_id, "name": name} in seen
    # b is released by a's end: its event comes after a started (the script of a's ack publishes
    # b's `enqueued` before a's `finished`, which it publishes last, with its other jobs')
    assert events.index(("started", run.job_id("a"))) < events.index(("enqueued", run.job_id("b")))


async def test_a_member_added_to_a_running_run_publishes_enqueued(env: Env) -> None:
    wf = Workflow()
    wf.add("work", {}, id="a")
    seen: list[dict[str, Any]] = []
    async with Client(env.redis, namespace=env.namespace).events() as stream:
        run = await env.enqueuer.enqueue_workflow(wf)
        await until(stream, seen, "enqueued", run.job_id("a"))
        await run.add("work", {}, id="x")  # queued at once
        await until(stream, seen, "enqueued", run.job_id("x"))
        await run.add("work", {}, id="y", after=["a"])  # waits for a: no event yet
        await env.pool.drain(timeout=20)
        await until(stream, seen, "finished", run.job_id("y"))
    events = order(seen)
    assert Counter(e for e in events if e[0] == "enqueued") == {
        ("enqueued", run.job_id(n)): 1 for n in "axy"
    }
    assert events.index(("started", run.job_id("a"))) < events.index(("enqueued", run.job_id("y")))
