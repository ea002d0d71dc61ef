"""A run one of whose own keys holds another type (written by hand, a bad restore) is held alone
by wf_cascade.lua: its work items are set aside and logged with the key and its repair, while the
other runs' walks on the work list proceed. Before, that one run refused every wf_cascade call
(WRONGTYPE naming its key), which held up the walks of every run of the namespace."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.workflows.store import HOLD_MS, WorkflowScripts
from tests.support.invariants import assert_invariants
from tests.workflows.test_cascade import pool_for


async def _chain(redis: Redis, namespace: str, run_id: str) -> None:
    """Run ``run_id``: a -> b, with a's dependents on the work list (as a pool's walk leaves
    them), b still waiting for a."""
    wf = Workflow("one", id=run_id)
    wf.add("work", {}, id="b", after=[wf.add("work", {}, id="a")])
    await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    await redis.zadd(Keys(namespace).workflows_work, {f"ok a  {run_id}": 1})


@pytest.mark.parametrize("part", ["", "out", "in", "env", "nodes"])
async def test_a_run_with_a_key_of_another_type_holds_only_its_own_walks(
    redis: Redis, namespace: str, part: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    for run_id in ("wa", "wb", "wc"):
        await _chain(redis, namespace, run_id)
    bad = keys.workflow("wb", part)
    kind = await redis.type(bad)
    saved = await redis.dump(bad)
    await redis.delete(bad)
    await redis.set(bad, "x")
    scripts = WorkflowScripts(redis, keys)
    with caplog.at_level(logging.ERROR, logger="errands.workflows"):
        assert await scripts.cascade_all() == 3
    for run_id in ("wa", "wc"):  # walked: b released, no edge left
        assert await redis.hexists(keys.workflow(run_id, "env"), "b") == 0
        assert await redis.zcard(keys.workflow(run_id, "in")) == 0
    # wb's item set aside, nothing of wb written
    score = await redis.zscore(keys.workflows_work, "ok a  wb")
    seconds, _ = await redis.time()
    assert score is not None and score > seconds * 1000 + HOLD_MS - 5_000
    assert await redis.zcard(keys.workflows_work) == 1
    if part != "in":
        assert await redis.zcard(keys.workflow("wb", "in")) == 1
    lines = [r.getMessage() for r in caplog.records if "workflow run wb" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"its key {bad} holds another type" in lines[0]
    assert f"restore the run's value of {bad} (RENAME <copy> {bad}" in lines[0]
    assert await scripts.cascade() == 0  # (set aside: not read again for half its hold)
    # repaired, and its hold over: walked
    await redis.delete(bad)
    await redis.restore(bad, 0, saved)
    assert (await redis.type(bad)) == kind
    await redis.zadd(keys.workflows_work, {"ok a  wb": 1})
    assert await scripts.cascade_all() == 1
    assert await redis.hexists(keys.workflow("wb", "env"), "b") == 0
    assert await redis.exists(keys.workflows_work) == 0
    await assert_invariants(redis, namespace)


async def test_a_pool_walks_a_wide_fan_out_past_a_run_with_a_key_of_another_type(
    redis: Redis, namespace: str
) -> None:
    """End to end: run wa's nodes key is a string and its walk waits on the work list; a pool
    runs wb, a root with 300 dependents (its ack walks 200, the list the rest), to its end."""
    keys = Keys(namespace)
    await _chain(redis, namespace, "wa")
    await redis.delete(keys.workflow("wa", "nodes"))
    await redis.set(keys.workflow("wa", "nodes"), "x")
    wf = Workflow("wide", id="wb")
    root = wf.add("work", {}, id="root")
    for i in range(300):
        wf.add("work", {}, id=f"c{i}", after=[root])
    ran: list[str] = []
    pool = pool_for(redis, namespace, ran)
    await pool.start()
    try:
        run = await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
        status = await run.wait(timeout=10)
    finally:
        await pool.stop()
    assert status.status == "succeeded" and len([j for j in ran if j.startswith("wb.")]) == 301
    assert await redis.zrange(keys.workflows_work, 0, -1) == [b"ok a  wa"]
