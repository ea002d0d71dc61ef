"""A member parked in the dead set (released while its queue held another type: it has not
ended, its run waits for it) and then trimmed from there by the set's age or size bounds ends
as failed in the trimming script: its run was left `running` for ever, no callback, no linger,
its keys never expiring."""

from __future__ import annotations

from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.store.scripts import Scripts, Settle
from errands.workflows.run import WorkflowRun
from tests.store.test_wf_park import parked
from tests.support.fetched import POOL, running_job
from tests.support.invariants import assert_invariants


async def assert_failed_by_the_trim(redis: Redis, keys: Keys, b: str) -> None:
    assert await redis.zscore(keys.dead, b) is None  # trimmed
    assert await redis.hget(keys.workflow_of, b) is None  # its end handled
    status = await WorkflowRun(redis, keys, "w1").status()
    assert status.status == "failed" and status.failed_node == "b"
    node = status.nodes["b"]
    assert node.state == "failed" and "trimmed" in str(node.error)
    assert await redis.pttl(keys.workflow("w1")) > 0  # the linger runs
    async for key in redis.scan_iter(match=keys.workflow("w1") + "*"):
        assert await redis.pttl(key) > 0, key  # (none kept for ever)


async def test_a_parked_member_trimmed_by_size_fails_its_run(redis: Redis, namespace: str) -> None:
    keys, b = await parked(redis, namespace)
    scripts = Scripts(redis, keys)
    assert await scripts.trim_set(keys.dead, 0, 0) == 1
    await assert_failed_by_the_trim(redis, keys, b)
    before = await WorkflowRun(redis, keys, "w1").status()
    assert await scripts.trim_set(keys.dead, 0, 0) == 0  # sent again: nothing more
    assert await WorkflowRun(redis, keys, "w1").status() == before
    await redis.delete(keys.queue("other"))  # (the key of another type the park left)
    await assert_invariants(redis, namespace)


async def test_a_parked_member_trimmed_by_age_fails_its_run(redis: Redis, namespace: str) -> None:
    keys, b = await parked(redis, namespace)
    assert await Scripts(redis, keys).trim_set(keys.dead, 2**52, 10_000) == 1
    await assert_failed_by_the_trim(redis, keys, b)


async def test_a_parked_member_trimmed_by_a_burial_fails_its_run(
    redis: Redis, namespace: str
) -> None:
    """settle.lua trims the dead set as it buries a job: the same consequence there."""
    keys, b = await parked(redis, namespace)
    _keys, job_id = await running_job(redis, namespace)
    s = Settle(job_id, "work", "dead", keys.dead, 5_000, 1, started_ms=4_000, token="1")
    s.score_ms, s.error, s.dead_max = 2**52, b'{"error":"boom"}', 0
    assert await Scripts(redis, keys).settle(POOL, s)
    assert await redis.zscore(keys.dead, job_id) is not None  # (its own call keeps it)
    await assert_failed_by_the_trim(redis, keys, b)


async def test_a_parked_member_of_a_run_with_a_bad_key_stays_until_repaired(
    redis: Redis, namespace: str
) -> None:
    """Its end cannot be written into its run: it is left in the dead set, not trimmed without
    its end (nor does it hold the trim of the other jobs); once repaired, the next trim ends it."""
    keys, b = await parked(redis, namespace)
    await redis.zadd(keys.dead, {"plain": 1})
    await redis.set(keys.workflow("w1", "in"), "x")
    scripts = Scripts(redis, keys)
    assert await scripts.trim_set(keys.dead, 0, 0) == 1
    assert await redis.zscore(keys.dead, "plain") is None
    assert await redis.zscore(keys.dead, b) is not None
    assert await redis.hget(keys.workflow_of, b) == b"w1"
    await redis.delete(keys.workflow("w1", "in"))
    assert await scripts.trim_set(keys.dead, 0, 0) == 1
    await assert_failed_by_the_trim(redis, keys, b)


async def test_the_run_of_a_trimmed_parked_member_calls_on_failure(
    redis: Redis, namespace: str
) -> None:
    """As parked() (tests/store/test_wf_park.py), with an ``on_failure`` callback: it is queued by
    the trim's call."""
    keys = Keys(namespace)
    wf = Workflow("chain", id="w1")
    wf.add("work", {}, id="a")
    wf.add("other", {}, id="b", after=["a"], on_dependency_failure="continue")
    wf.on_failure("alert", {})
    run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    await redis.set(keys.queue("other"), "x")
    assert await Scripts(redis, keys).cancel(run.job_id("a"), "work", 1, 60_000) == "cancelled"
    assert await redis.zscore(keys.dead, run.job_id("b")) is not None  # parked
    assert await Scripts(redis, keys).trim_set(keys.dead, 0, 0) == 1
    await assert_failed_by_the_trim(redis, keys, run.job_id("b"))
    assert await redis.zscore(keys.queue("alert"), run.callback_job_id("on_failure")) is not None
