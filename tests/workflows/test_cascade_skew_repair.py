"""wf_cascade.lua's reading of the work list and its held runs (review rev-wf of 61a6e57,
d287cdf): an item scored by a clock ahead is read, a held run's logged repair (restore its key,
never DEL it) lets it go on, a dependent whose spec has no job name is parked, not lost."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.store.keys import Keys
from errands.workflows.store import WorkflowScripts


async def _chain(redis: Redis, namespace: str, run_id: str, score: float = 1) -> None:
    """Run ``run_id``: a -> b, a's dependents on the work list with ``score``, b waiting."""
    wf = Workflow("one", id=run_id)
    wf.add("work", {}, id="b", after=[wf.add("work", {}, id="a")])
    await Enqueuer(redis, namespace=namespace, strict=None).enqueue_workflow(wf)
    await redis.zadd(Keys(namespace).workflows_work, {f"ok a  {run_id}": score})


async def test_an_item_scored_by_a_clock_ahead_is_walked(redis: Redis, namespace: str) -> None:
    """An item written with a score ahead of this Redis' clock (the primary before a failover,
    whose clock ran 10 s ahead; replicated ZADD carries the literal score) is read at once:
    wf_cascade.lua reads items scored up to 15 s ahead of its clock (half its hold of a held
    run's items; an item further ahead waits until the clock is within 15 s of it)."""
    keys = Keys(namespace)
    seconds, _ = await redis.time()
    await _chain(redis, namespace, "wa", score=seconds * 1000 + 10_000)
    await WorkflowScripts(redis, keys).cascade_all()
    assert await redis.hexists(keys.workflow("wa", "env"), "b") == 0  # b released
    assert await redis.zcard(keys.workflows_work) == 0


@pytest.mark.parametrize("part", ["", "out", "in", "env", "nodes"])
async def test_a_held_run_goes_on_once_its_key_is_restored(
    redis: Redis, namespace: str, part: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A held run's logged repair is to restore its key's value (RENAME a copy back), never
    DEL it (the run's state; review rev-wf: "or DEL <key>" left the run running for ever).
    Followed, the run's walk goes on: b released."""
    keys = Keys(namespace)
    await _chain(redis, namespace, "wb")
    bad = keys.workflow("wb", part)
    await redis.rename(bad, bad + "~copy")  # (same hash tag)
    await redis.set(bad, "x")
    scripts = WorkflowScripts(redis, keys)
    with caplog.at_level(logging.ERROR, logger="errands.workflows"):
        await scripts.cascade_all()
    (line,) = [r.getMessage() for r in caplog.records if bad in r.getMessage()]
    assert f"RENAME <copy> {bad}" in line
    assert f"do not DEL {bad}" in line
    assert not await redis.hexists(keys.jobs, "wb.b")  # held
    await redis.rename(bad + "~copy", bad)  # the repair the line offers
    await redis.zadd(keys.workflows_work, {"ok a  wb": 1})  # (its hold over)
    await scripts.cascade_all()
    assert await redis.hexists(keys.jobs, "wb.b")  # b released
    assert await redis.hget(keys.workflow("wb"), "status") == b"running"
    assert await redis.zcard(keys.workflows_work) == 0


@pytest.mark.parametrize("part", ["", "out", "in", "env", "nodes"])
async def test_a_held_run_whose_key_is_deleted_stays_unfinished(
    redis: Redis, namespace: str, part: str
) -> None:
    """What docs/workflows.md says a DEL of a held run's key does: the run's state in it is
    lost, b is never released nor ended, the run never finishes."""
    keys = Keys(namespace)
    await _chain(redis, namespace, "wd")
    bad = keys.workflow("wd", part)
    await redis.delete(bad)
    await redis.set(bad, "x")
    scripts = WorkflowScripts(redis, keys)
    await scripts.cascade_all()
    await redis.delete(bad)
    await redis.zadd(keys.workflows_work, {"ok a  wd": 1})
    await scripts.cascade_all()
    assert not await redis.hexists(keys.jobs, "wd.b")
    status = await redis.hget(keys.workflow("wd"), "status")
    assert status in (b"running", None)


async def test_a_dependent_whose_spec_has_no_name_is_parked_not_lost(
    redis: Redis, namespace: str
) -> None:
    """A fit run's nodes hash (type checked fine) whose dependent's spec has no "n" (written by
    hand, an older version) raised inside the walk (wf_queue: SADD of nil) after the call's
    first writes (the held run's ZADD, the item's ZREM, b's envelope HDEL, its jobs HSET): an
    error reply after the first write, b lost (review rev-wf). Now b is parked in the dead set
    with an error saying so, its envelope kept; the call answers; the held run stays held."""
    keys = Keys(namespace)
    await _chain(redis, namespace, "wa")  # held: its nodes key a string
    await redis.delete(keys.workflow("wa", "nodes"))
    await redis.set(keys.workflow("wa", "nodes"), "x")
    await _chain(redis, namespace, "wc", score=2)
    await redis.hset(keys.workflow("wc", "nodes"), "b", '{"f":"all"}')
    assert await WorkflowScripts(redis, keys).cascade_all() == 2
    assert await redis.zscore(keys.dead, "wc.b") is not None
    assert (
        await redis.hget(keys.errors, "wc.b")
        == b'{"error":"its spec in the run holds no job name"}'
    )
    assert (await redis.hget(keys.jobs, "wc.b") or b"").startswith(b"{")
    assert await redis.hget(keys.workflow("wc"), "status") == b"running"  # (parked: not ended)
    assert await redis.zrange(keys.workflows_work, 0, -1) == [b"ok a  wa"]
