"""The invariant checker's workflow checks fail on a run broken on purpose (real Redis)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants, check_invariants

Breaker = Callable[[Redis, Keys, str], Awaitable[Any]]


async def _both(*calls: Awaitable[Any]) -> None:
    for call in calls:
        await call


BROKEN: dict[str, tuple[Breaker, str]] = {
    "a waiting member with no edge left": (
        lambda r, k, run: r.zrem(k.workflow(run, "in"), "b<a"),
        "member b waits with no dependency left: stranded",
    ),
    "a running run with a TTL": (
        lambda r, k, run: r.pexpire(k.workflow(run, "nodes"), 60_000),
        "key nodes of a running run has a TTL",
    ),
    "a member without its membership": (
        lambda r, k, run: r.hdel(k.workflow_of, f"{run}.b"),
        "open member b has no membership",
    ),
    "a released member that is no job": (
        lambda r, k, run: _both(r.zrem(k.queue("work"), f"{run}.a"), r.hdel(k.jobs, f"{run}.a")),
        "member a was released but is no live job: stranded",
    ),
    "a run missing from the index": (
        lambda r, k, run: r.zrem(k.workflows, run),
        "is not in the index of runs",
    ),
    "a stray key of a run": (
        lambda r, k, run: r.set(k.workflow(run, "extra"), 1),
        "key part 'extra' is not part of the data layout",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_each_workflow_check_fails(redis: Redis, namespace: str, case: str) -> None:
    wf = Workflow()
    wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=["a"])
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        run = await enqueuer.enqueue_workflow(wf)
    await assert_invariants(redis, namespace)
    breaker, words = BROKEN[case]
    await breaker(redis, Keys(namespace), run.id)
    report = await check_invariants(redis, namespace)
    found = [v.detail for v in report.violations if v.check == "workflows"]
    assert any(words in d for d in found), report.violations
