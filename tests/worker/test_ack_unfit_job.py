"""One job ack.lua cannot take (a workflow member whose run has a key of another type) does not
hold the other jobs of its ack call: they are acknowledged, the unfit one is left alone (its
attempt and in-progress entry stay), reported unfit, logged and not retried by the acker. (ack.lua
refused the whole call, and the acker retried the batch for ever: the other jobs, and every
later ack of the pool, stayed unacknowledged.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.scripts import Acked, Fetched, Scripts
from errands.worker.acker import Acker

POOL = "p0000000000000001"


async def _member_and_plain(redis: Redis, keys: Keys) -> tuple[Scripts, int, Fetched, Fetched]:
    """A workflow member and a plain job fetched by POOL; the member's run's `res` is a string."""
    scripts = Scripts(redis, keys)
    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=[a])
    async with Enqueuer(redis, namespace=keys.namespace, strict=None) as enq:
        run = await enq.enqueue_workflow(wf)
        await enq.enqueue_many([("work", {}, {"job_id": "plain"})])  # type: ignore[list-item]
    now = await scripts.heartbeat(POOL, b"{}", 600_000, "register")
    got = await scripts.fetch(POOL, now, 5, [("work", 0)])
    assert got is not None
    ids = {f.id: f for f in got}
    await redis.delete(keys.workflow("w1", "res"))
    await redis.set(keys.workflow("w1", "res"), "x")
    return scripts, now, ids[run.job_id("a")], ids["plain"]


async def test_one_unfit_ack_does_not_hold_the_others(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(namespace)
    scripts, now, member, plain = await _member_and_plain(redis, keys)
    acker = Acker(scripts, POOL, SystemClock(), history=False)
    for f in (member, plain):
        acker.add(Acked(f.id, "work", b"1", now, 60_000, 1, f.token), False)
    with caplog.at_level(logging.ERROR, logger="errands.worker"):
        await asyncio.wait_for(acker.flush(), 5)  # (it retried for ever)
    assert acker.idle and acker.unfit == 1 and acker.refused == 0
    assert acker.holding() == {member.id}  # (the orphan sweep leaves it in progress)
    assert await redis.zscore(keys.in_progress(POOL), "plain:work") is None
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None
    assert await redis.hget(keys.attempts, member.id) is not None
    assert int(await redis.hget(keys.stats, "processed") or 0) == 1
    assert [r.getMessage() for r in caplog.records if member.id in r.getMessage()]


async def test_an_unfit_ack_re_sent_is_left_alone_again(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    scripts, now, member, plain = await _member_and_plain(redis, keys)
    done = [Acked(f.id, "work", b"1", now, 60_000, 1, f.token) for f in (member, plain)]
    for _ in range(2):  # the second: a re-send of the first
        report = await scripts.ack_report(POOL, done, False, now, False)
        assert (report.unfit, report.refused) == ([member.id], [])
    assert await redis.zcard(keys.in_progress(POOL)) == 1
    assert int(await redis.hget(keys.stats, "processed") or 0) == 1
