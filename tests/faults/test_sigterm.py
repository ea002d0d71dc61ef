"""Scenario 3 of issue 8: SIGTERM while jobs run, and between fetch and handler start.

Bound: the process exits 0 within shutdown_grace + 2 s; the short job and the job whose handler
starts inside the grace period complete; the long job and the job still held before its handler
are requeued exactly once, with no failure counted, and run to the end on the next pool.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report, starts_by_id

pytestmark = pytest.mark.faults

GRACE = 1.0


async def test_sigterm_during_long_job_and_before_handler_start(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    fleet.env.update(FAST, FAULT_SHUTDOWN_GRACE=str(GRACE))
    keys = fleet.keys
    first = fleet.start(FAULT_GATE="1")
    pools = await fleet.wait_ready(main)
    async with Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer:
        jobs = await enqueuer.enqueue_many(
            [
                ("work", {"seconds": 3.0}),  # long: still running when the grace is over
                ("work", {"seconds": 0.6}),  # short: finishes within the grace
                ("gated", {"gate": 0.4}),  # handler starts after SIGTERM, within the grace
                ("gated", {"gate": 5.0}),  # handler would start after the grace
            ]
        )
    long, short, gated_soon, gated_late = (j.id for j in jobs)

    async def all_in_flight() -> bool:
        started = {s.id for s in await oracle.starts()}
        fetched = {line[0] for line in await oracle.lines("fetched")}
        return {long, short} <= started and {gated_soon, gated_late} <= fetched

    await eventually(all_in_flight, 10, "the four jobs to be in flight", interval=0.01)
    term_at = time.time()
    first.send(signal.SIGTERM)
    code = await first.wait(timeout=GRACE + 10)
    exit_s = time.time() - term_at
    assert code == 0, first.output()[-3000:]
    assert exit_s < GRACE + 2, f"exit took {exit_s:.2f}s"

    ends = {e.id: e for e in await oracle.ends()}
    assert set(ends) == {short, gated_soon}, first.output()[-3000:]
    assert starts_by_id(await oracle.starts())[gated_soon][0].t > term_at
    # the other two are back on their queues as they were enqueued: no failure counted
    assert [m.decode() for m in await main.zrange(keys.queue("work"), 0, -1)] == [long]
    assert [m.decode() for m in await main.zrange(keys.queue("gated"), 0, -1)] == [gated_late]
    for job_id in (long, gated_late):
        envelope = orjson.loads(await main.hget(keys.jobs, job_id))
        assert "f" not in envelope, envelope
        assert await main.hget(keys.errors, job_id) is None
    stats = await main.hgetall(keys.stats)
    assert b"failed" not in stats and b"dead" not in stats, stats
    assert not any(int(v) for v in (await main.hgetall(keys.running)).values())
    assert pools[first.pid] not in {p.decode() for p in await main.zrange(keys.pools, 0, -1)}

    fleet.start()
    await oracle.wait_ended([long, short, gated_soon, gated_late], timeout=20)
    starts = starts_by_id(await oracle.starts())
    assert [len(starts[i]) for i in (long, short, gated_soon, gated_late)] == [2, 1, 1, 1]
    await assert_nothing_stuck(main, keys, ["work", "gated"])
    assert int((await main.hgetall(keys.stats))[b"processed"]) == 4
    report(
        "3. SIGTERM mid-job and between fetch and handler start",
        grace_s=GRACE,
        exit_s=exit_s,
        bound_s=GRACE + 2,
        exit_code=code,
        completed_in_grace=2,
        requeued_once=2,
        failures_counted=0,
    )
