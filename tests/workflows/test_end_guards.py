"""An ack of a workflow member checks the keys of its run (which no script declares, see
lib/workflows.lua's wf_unfit) before its first write, and leaves a member whose run is unfit
alone (reported unfit) rather than take it half-way."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Acked, Scripts
from tests.support.resend import snapshot

POOL = "p0000000000000001"


@pytest.mark.parametrize("part", ["res", "out"])
async def test_an_ack_of_a_member_meeting_a_bad_key_of_its_run_leaves_it_alone(
    redis: Redis, namespace: str, part: str
) -> None:
    """ack.lua took the member's attempt and slot, then raised in wf_end (a `res` or `out` of
    another type): the job forgotten half-way, its run never told (b waiting for ever)."""
    keys = Keys(namespace)
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=[a])
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    job_id = run.job_id("a")
    await redis.zadd(keys.pools, {POOL: 1})
    assert await redis.zrem(keys.queue("work"), job_id) == 1
    await redis.zadd(keys.in_progress(POOL), {f"{job_id}:work": 1})
    await redis.hset(keys.attempts, job_id, f"{POOL}:1")
    await redis.delete(keys.workflow("w1", part))
    await redis.set(keys.workflow("w1", part), "x")
    before = await snapshot(redis, namespace)
    done = Acked(job_id, "work", b"1", 1, 60_000, 1, token="1")
    report = await Scripts(redis, keys).ack_report(POOL, [done], False, 2, True)
    assert (report.unfit, report.refused) == ([job_id], [])
    assert await snapshot(redis, namespace) == before
