"""A run's linger: at most 366 days (PEXPIRE refused 10^20 ms after the first write of the
script that ended the run's last member), and a stored one that is not a whole number of ms is
read as the default, 24 h, rather than failing every end of the run."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import Enqueuer, Workflow
from errands.errors import WorkflowError
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.workflows.store import WorkflowScripts
from tests.support.resend import snapshot

POOL = "p0000000000000001"


async def test_a_linger_past_366_days_is_refused(redis: Redis, namespace: str) -> None:
    enqueuer = Enqueuer(redis, namespace=namespace, strict=None)
    with pytest.raises(WorkflowError, match="at most 366 days"):
        Workflow("long", id="w1", linger=366 * 86400 + 1)  # refused where it is given
    wf = Workflow("long", id="w1")
    wf.add("work", {}, id="a")
    wf.linger = 366 * 86400 + 1  # (set since: refused by the enqueue)
    with pytest.raises(WorkflowError, match="at most 366 days"):
        await enqueuer.enqueue_workflow(wf)
    scripts = WorkflowScripts(redis, Keys(namespace))
    with pytest.raises(ResponseError, match="linger"):
        await scripts.enqueue("w2", "long", 10**20, [], [], [])
    assert await snapshot(redis, namespace) == {}


async def test_a_stored_linger_that_is_not_one_is_read_as_24_hours(
    redis: Redis, namespace: str
) -> None:
    """The run's last member buried: the run finishes, its keys kept 24 h (it raised in
    PEXPIRE after the member was buried: the run never finished)."""
    keys = Keys(namespace)
    wf = Workflow("chain", id="w1")
    wf.add("work", {}, id="a")
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    a = run.job_id("a")
    await redis.hset(keys.workflow("w1"), "linger", "soon")
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), a) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{a}:work": 1})
    await redis.hset(keys.attempts, a, f"{POOL}:1")
    s = Settle(a, "work", "dead", keys.dead, 1, 1, score_ms=1, error=b'{"e":1}', token="1")
    assert await Scripts(redis, keys).settle(POOL, s)
    assert await redis.hget(keys.workflow("w1"), "status") == b"failed"
    assert 86_000_000 < await redis.pttl(keys.workflow("w1")) <= 86_400_000


@pytest.mark.parametrize("family", ["workflows", "names", "workflow_of"])
async def test_a_workflow_enqueue_meeting_a_key_of_another_type_stores_nothing(
    redis: Redis, namespace: str, family: str
) -> None:
    """wf_enqueue.lua had no key-type pass: it stored the run's head, then raised (a run
    half stored: its later enqueue answered 'exists', its members never ran)."""
    keys = Keys(namespace)
    await redis.set(getattr(keys, family), "x")
    before = await snapshot(redis, namespace)
    wf = Workflow("chain", id="w1")
    wf.add("work", {}, id="a")
    with pytest.raises(ResponseError, match="no workflow run was stored"):
        await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    assert await snapshot(redis, namespace) == before
