"""A workflow member that ends without running publishes its event, as any job's end does: one
released while its queue holds another type is parked in the dead set (`dead`, with the error
stored for it), one ended while it waited for its dependencies (a dependency failed under its
policy "fail", or its run was cancelled) is `cancelled`. They published none: an events()
stream never learnt that those jobs ended. Only while someone listens, as every event."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Client, Enqueuer, Workflow
from errands.admin.events import EventStream
from errands.store.keys import Keys
from errands.store.scripts import Scripts

from .conftest import Env

MARK = {"event": "(mark)", "id": "-", "name": "-"}


async def heard(stream: EventStream, redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    """The events the stream got so far: read up to a mark published now (no wait on time)."""
    await redis.publish(keys.events_channel, orjson.dumps(MARK))
    got = []
    async for event in stream:
        if event == MARK:
            return got
        got.append(event)
    raise AssertionError("the stream ended")


def ended(events: list[dict[str, Any]], kind: str) -> Counter[str]:
    return Counter(e["id"] for e in events if e["event"] == kind)


async def test_a_parked_member_publishes_dead(redis: Redis, namespace: str) -> None:
    """b's queue holds another type when a's cancel releases it: parked in the dead set."""
    keys = Keys(namespace)
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("other", {}, id="b", after=[a], on_dependency_failure="continue")
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    await redis.set(keys.queue("other"), "x")
    async with Client(redis, namespace=namespace).events() as stream:
        assert await Scripts(redis, keys).cancel(run.job_id("a"), "work", 1, 60_000) == "cancelled"
        events = await heard(stream, redis, keys)
    b = run.job_id("b")
    assert await redis.zscore(keys.dead, b) is not None
    error = orjson.loads(await redis.hget(keys.errors, b))
    assert {"event": "dead", "id": b, "name": "other", "error": error} in events, events
    assert ended(events, "enqueued")[b] == 0  # (not queued)


async def test_members_ended_by_a_failure_publish_cancelled(env: Env) -> None:
    """a fails for good; b (policy "fail") and c after b never run."""
    wf = Workflow()
    a = wf.add("work", {"fail": True}, id="a")
    b = wf.add("work", {}, id="b", after=[a])
    wf.add("work", {}, id="c", after=[b])
    async with Client(env.redis, namespace=env.namespace).events() as stream:
        run = await env.enqueuer.enqueue_workflow(wf)
        await env.pool.drain(timeout=20)
        events = await heard(stream, env.redis, env.keys)
    assert (await run.status()).status == "failed"
    assert ended(events, "dead") == {run.job_id("a"): 1}
    cancelled = ended(events, "cancelled")
    assert cancelled == {run.job_id("b"): 1, run.job_id("c"): 1}, events
    assert {"event": "cancelled", "id": run.job_id("b"), "name": "work"} in events
    order = [(e["event"], e["id"]) for e in events]
    assert order.index(("dead", run.job_id("a"))) < order.index(("cancelled", run.job_id("b")))


async def test_a_cancelled_run_publishes_cancelled_for_its_waiting_members(env: Env) -> None:
    """a is queued (cancel.lua ends it, as before), b and c wait: each one `cancelled`; the
    callback, never a job, none."""
    wf = Workflow()
    a = wf.add("work", {}, id="a")
    b = wf.add("merge", {}, id="b", after=[a])
    wf.add("work", {}, id="c", after=[b])
    wf.on_success("notify", {})
    async with Client(env.redis, namespace=env.namespace).events() as stream:
        run = await env.enqueuer.enqueue_workflow(wf)
        assert await run.cancel()
        events = await heard(stream, env.redis, env.keys)
    assert (await run.status()).status == "cancelled"
    assert ended(events, "cancelled") == {run.job_id(n): 1 for n in "abc"}, events
    assert {"event": "cancelled", "id": run.job_id("b"), "name": "merge"} in events
    assert all(e["id"] != run.callback_job_id("on_success") for e in events)


async def test_nothing_is_published_while_nobody_listens(own_redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    enqueuer = Enqueuer(own_redis, namespace=namespace, strict=None)
    wf = Workflow()
    a = wf.add("work", {}, id="a")
    b = wf.add("work", {}, id="b", after=[a])
    wf.add("other", {}, id="c", after=[b])
    run = await enqueuer.enqueue_workflow(wf)
    await own_redis.config_resetstat()
    assert await run.cancel()
    wf = Workflow()
    a = wf.add("work", {}, id="a")
    wf.add("other", {}, id="b", after=[a], on_dependency_failure="continue")
    parked = await enqueuer.enqueue_workflow(wf)
    await own_redis.set(keys.queue("other"), "x")
    assert await Scripts(own_redis, keys).cancel(parked.job_id("a"), "work", 1, 60_000)
    assert await own_redis.zscore(keys.dead, parked.job_id("b")) is not None
    stats = await own_redis.info("commandstats")
    assert "cmdstat_publish" not in stats, stats.get("cmdstat_publish")
