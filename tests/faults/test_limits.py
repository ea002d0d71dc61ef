"""Scenario 7 of issue 8: ``max_concurrency`` 1 and 3 held across 8 worker processes while 2 of
them are SIGKILLed holding such a job.

Bound: the measured overlap of handler runs never exceeds the limit; the ``running`` counters are
never seen negative (nor above the limit) and are back to 0 at the end; nothing is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from tests.support.procs import max_overlap

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

LIMITS = {"serial": 1, "capped": 3}


async def kill_one_running(fleet: Fleet, main: Redis, pools: dict[int, str], name: str) -> float:
    """SIGKILL an alive pool while it runs a job of ``name``; returns the time of the kill."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in fleet.alive:
            if proc.pid in pools:
                members = await main.zrange(fleet.keys.in_progress(pools[proc.pid]), 0, -1)
                if any(m.decode().endswith(":" + name) for m in members):
                    return fleet.kill(proc)
        await asyncio.sleep(0.005)
    raise AssertionError(f"no pool ran a {name} job")


async def test_max_concurrency_across_processes_with_kills(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    fleet.env.update(FAST, FAULT_DEAD_TIMEOUT="2.0", FAULT_CONCURRENCY="4")
    keys = fleet.keys
    for _ in range(8):
        fleet.start()
    pools = await fleet.wait_ready(main, timeout=30)
    await asyncio.sleep(2.0)  # every reaper is armed (own beats healthy for dead_timeout)

    seen: dict[str, list[int]] = defaultdict(list)
    sampling = True

    async def sample() -> None:
        while sampling:
            for name, count in (await main.hgetall(keys.running)).items():
                seen[name.decode()].append(int(count))
            await asyncio.sleep(0.005)

    rng = random.Random(7)
    jobs = [("serial", {"seconds": round(rng.uniform(0.05, 0.1), 3)}) for _ in range(40)]
    jobs += [("capped", {"seconds": round(rng.uniform(0.1, 0.2), 3)}) for _ in range(120)]
    rng.shuffle(jobs)
    sampler = asyncio.create_task(sample())
    began = time.monotonic()
    async with Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer:
        ids = [j.id for j in await enqueuer.enqueue_many(jobs)]
    await asyncio.sleep(0.5)
    await kill_one_running(fleet, main, pools, "serial")
    await asyncio.sleep(1.0)
    await kill_one_running(fleet, main, pools, "capped")
    await oracle.wait_ended(ids, timeout=60)
    await assert_nothing_stuck(main, keys, LIMITS)
    sampling = False
    await sampler

    names = {i: n for i, (n, _a) in zip(ids, jobs, strict=True)}
    ends = {(e.id, e.pid, e.start): e.end for e in await oracle.ends()}
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in await oracle.starts():
        # a run cut short by a SIGKILL ended when its process was killed
        end = ends.get((s.id, s.pid, s.t), fleet.killed.get(s.pid))
        assert end is not None, f"run of {s.id} in {s.pid} never ended"
        intervals[names[s.id]].append((s.t, end))
    overlap = {name: max_overlap(intervals[name]) for name in LIMITS}
    low = {name: min(seen[name]) for name in LIMITS}
    high = {name: max(seen[name]) for name in LIMITS}
    report(
        "7. max_concurrency 1 and 3, 8 processes, 2 SIGKILLed",
        jobs=len(ids),
        killed=len(fleet.killed),
        max_overlap_serial=overlap["serial"],
        max_overlap_capped=overlap["capped"],
        counter_min=min(low.values()),
        counter_max_serial=high["serial"],
        counter_max_capped=high["capped"],
        counter_samples=sum(len(v) for v in seen.values()),
        counter_at_end=0,
        lost=0,
        runtime_s=time.monotonic() - began,
    )
    assert len(fleet.killed) == 2
    for name, limit in LIMITS.items():
        assert overlap[name] <= limit, (name, overlap)
        assert low[name] >= 0 and high[name] <= limit, (name, low, high)
    assert overlap == LIMITS  # the limits were reached, so the test did test them
