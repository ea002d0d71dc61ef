"""A parked ack or settle (a script refused the job: here, a workflow member whose run has a key
of another type) is sent again now and then while the pool lives: still unfit, nothing is
written and it stays parked; once the key is repaired (deleted), it ends. (A parked job stayed
in progress until the pool was gone, whatever was repaired.)"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from errands import Enqueuer, Job, WorkerPool, Workflow
from errands.clock import SystemClock
from errands.store.keys import Keys
from errands.store.records import Settle, SettleRefused
from errands.store.scripts import Acked, Scripts
from errands.worker.acker import Acker
from tests.support.fetched import fetch_none
from tests.support.procs import eventually
from tests.support.resend import snapshot
from tests.worker.test_ack_unfit_job import POOL, _member_and_plain
from tests.worker.test_settle_refused import _settler


async def test_a_parked_ack_sent_again_ends_once_its_key_is_repaired(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    scripts, now, member, plain = await _member_and_plain(redis, keys)
    acker = Acker(scripts, POOL, SystemClock(), history=False)
    for f in (member, plain):
        acker.add(Acked(f.id, "work", b"1", now, 60_000, 1, f.token), False)
    await asyncio.wait_for(acker.flush(), 5)
    assert acker.holding() == {member.id}
    before = await snapshot(redis, namespace)
    assert await acker.resend_parked() == 0  # still unfit: left alone again
    assert acker.holding() == {member.id} and acker.unfit == 1
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.workflow("w1", "res"))  # repaired
    assert await acker.resend_parked() == 1
    assert acker.holding() == set() and acker.unfit == 1
    assert await redis.zcard(keys.in_progress(POOL)) == 0
    assert await redis.hget(keys.attempts, member.id) is None
    assert int(await redis.hget(keys.stats, "processed") or 0) == 2


async def test_a_parked_settle_sent_again_ends_once_its_key_is_repaired(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    _scripts, _now, member, _plain = await _member_and_plain(redis, keys)
    settler = _settler(redis, keys)
    await asyncio.wait_for(settler.requeue_fetched(member, "work"), 5)
    assert settler.parked.keys() == {member.id}
    before = await snapshot(redis, namespace)
    assert await settler.resend_parked() == 0
    assert settler.parked.keys() == {member.id}
    assert await snapshot(redis, namespace) == before
    await redis.delete(keys.workflow("w1", "res"))
    assert await settler.resend_parked() == 1
    assert not settler.parked
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is None
    assert await redis.zscore(keys.queue("work"), member.id) is not None


async def test_the_pool_sends_a_parked_ack_again_while_it_lives(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=0.05)
    release, ran = asyncio.Event(), asyncio.Event()

    @pool.job("work")
    async def work(job: Job) -> None:
        ran.set()
        await release.wait()

    wf = Workflow("chain", id="w1")
    wf.add("work", {}, id="a")
    async with Enqueuer(redis, namespace=namespace) as enq:
        run = await enq.enqueue_workflow(wf)
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.parked_interval = 0.05  # (a minute by default)
        await asyncio.wait_for(ran.wait(), 5)
        res = keys.workflow("w1", "res")
        await redis.delete(res)
        await redis.set(res, "x")
        release.set()
        await eventually(lambda: _true(worker.acker.unfit == 1), 5, "the ack parked")
        await redis.delete(res)  # repaired: the next round acknowledges the job
        await eventually(lambda: _true(not worker.acker.parked), 5, "the parked ack sent again")
        assert await redis.zcard(keys.in_progress(worker.pool_id)) == 0
        assert await redis.hget(keys.attempts, run.job_id("a")) is None
    finally:
        await pool.stop()


async def _true(value: bool) -> bool:
    return value


async def test_an_orphan_the_sweep_cannot_requeue_is_parked_and_holds_no_other(
    redis: Redis, namespace: str
) -> None:
    """Two orphans in a pool's in-progress set (fetched for it, their reply read by nobody): the
    first a workflow member whose run has a key of another type, which settle.lua refuses. The
    sweep parks it (sent again with the parked settles) and requeues the other. (The refusal
    raised out of the sweep: every pass stopped at the same orphan, the others stayed.)"""
    keys = Keys(namespace)
    pool = WorkerPool(redis, namespace=namespace, concurrency=2, poll_interval=3600.0)

    @pool.job("work")
    async def work(job: Job) -> None:
        pass

    wf = Workflow("chain", id="w1")
    a = wf.add("work", {}, id="a")
    wf.add("work", {}, id="b", after=[a])
    await pool.start()
    try:
        worker = pool.worker
        assert worker is not None
        worker.reclaim_interval = 3600.0
        fetch_none(worker)  # (the orphans stay ones)
        async with Enqueuer(redis, namespace=namespace) as enq:
            run = await enq.enqueue_workflow(wf)
            await enq.enqueue("work", {}, job_id="zplain")  # (swept after the member)
        got = await Scripts(redis, keys).fetch(worker.pool_id, 0, 5, [("work", 0)])
        assert got is not None and sorted(f.id for f in got) == [run.job_id("a"), "zplain"]
        res = keys.workflow("w1", "res")
        await redis.delete(res)
        await redis.set(res, "x")
        await asyncio.wait_for(worker._reclaim_orphans(), 10)
        assert worker.reclaimed == 1 and not worker._reclaim
        assert await redis.zscore(keys.queue("work"), "zplain") is not None
        assert worker.settler.parked.keys() == {run.job_id("a")}
        assert await redis.zrange(keys.in_progress(worker.pool_id), 0, -1) == [
            f"{run.job_id('a')}:work".encode()
        ]
        await redis.delete(res)  # repaired: the next sweep requeues it
        assert await worker.resend_parked() == 0 and worker._reclaim
        assert not worker.settler.parked
        await asyncio.wait_for(worker._reclaim_orphans(), 10)
        assert worker.reclaimed == 2 and not worker.settler.parked
        assert await redis.zcard(keys.in_progress(worker.pool_id)) == 0
    finally:
        await pool.stop()


async def test_a_parked_orphan_requeue_is_left_to_the_orphan_sweep(
    redis: Redis, namespace: str
) -> None:
    """An orphan's requeue (token '*': fenced by the pool, not by an attempt) parked, then the
    job fetched by this pool again: sent again as it was parked, it put the job back on its
    queue while a task here ran it (twice at once). The sweep, which checks what the pool's
    tasks hold, sends it again instead."""
    keys = Keys(namespace)
    scripts, now, member, _plain = await _member_and_plain(redis, keys)
    settler = _settler(redis, keys)
    s = Settle(member.id, "work", "requeue", keys.queue("work"), now, 1, history=False)
    (outcome,) = await scripts.settle_report(POOL, [s])
    assert isinstance(outcome, SettleRefused)
    settler.park(s, outcome)
    await redis.hset(keys.attempts, member.id, f"{POOL}:99")  # fetched here again meanwhile
    await redis.delete(keys.workflow("w1", "res"))  # repaired
    assert await settler.resend_parked() == 0
    assert await redis.zscore(keys.in_progress(POOL), f"{member.id}:work") is not None
    assert await redis.zscore(keys.queue("work"), member.id) is None
    assert settler.unpark_orphans() == 1 and not settler.parked
