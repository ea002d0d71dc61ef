"""Workflows under worker crashes (issue 19): a 1,000-member fan-out/fan-in run by 4 worker
processes, one of them SIGKILLed (and replaced) every 5 s, 5 % of the members failing twice
before they succeed. In every run: the fan-in sees the 1,000 results, ``on_success`` is
enqueued and runs exactly once (the oracle records every run of it), and once the linger is
over no key of the run remains. ``WF_CRASH_RUNS`` (default 1) repeats the run."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest
from redis.asyncio import Redis

from errands import Enqueuer, Workflow
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

CHILDREN = 1000
RUNS = int(os.environ.get("WF_CRASH_RUNS", "1"))


def fan_in(seed: int, linger: float) -> Workflow:
    rng = random.Random(seed)
    flaky = set(rng.sample(range(CHILDREN), CHILDREN // 20))
    wf = Workflow("crash", linger=linger)
    start = wf.add("wf_child", {"i": -1}, id="start")
    parts = [
        wf.add(
            "wf_child",
            {"i": i, "seconds": 0.4, "fail_times": 2 if i in flaky else 0},
            id=f"c{i}",
            after=[start],
        )
        for i in range(CHILDREN)
    ]
    wf.add("wf_merge", {}, id="merge", after=parts)
    wf.on_success("wf_done", {})
    wf.on_failure("wf_done", {"failed": True})
    return wf


async def killer(fleet: Fleet, main: Redis, stop: asyncio.Event, rng: random.Random) -> int:
    """Every 5 s, SIGKILL a random worker process and start a new one; returns the kills."""
    kills = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 5.0)
            break
        except TimeoutError:
            pass
        fleet.kill(rng.choice(fleet.alive))
        kills += 1
        fleet.start(**FAST)
    return kills


@pytest.mark.parametrize("run_index", range(RUNS))
async def test_fan_in_under_kill_9(
    run_index: int, fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str
) -> None:
    for _ in range(4):
        fleet.start(**FAST)
    await fleet.wait_ready(main)
    linger = 2.0
    began = time.monotonic()
    async with Enqueuer.from_url(fault_redis_url, namespace=fleet.keys.namespace) as enqueuer:
        run = await enqueuer.enqueue_workflow(fan_in(run_index, linger))
        stop = asyncio.Event()
        kills = asyncio.create_task(killer(fleet, main, stop, random.Random(run_index)))
        try:
            status = await run.wait(timeout=240)
        finally:
            stop.set()
            killed = await kills
    took = time.monotonic() - began
    assert status.status == "succeeded", (status.failed_node, status.counts())
    assert status.counts() == {"succeeded": CHILDREN + 2}

    async def callback_ran() -> bool:
        return await oracle.count("callbacks") >= 1

    await eventually(callback_ran, 30, "the on_success callback ran")
    merges = await oracle.lines("merges")
    assert merges and all(m[2:] == [str(CHILDREN), str(CHILDREN)] for m in merges), merges
    await assert_nothing_stuck(main, fleet.keys, ["wf_child", "wf_merge", "wf_done"], 30)
    callbacks = await oracle.lines("callbacks")
    assert [c[0] for c in callbacks] == [f"{run.id}!on_success"], callbacks

    async def lingered_out() -> bool:
        left = [k async for k in main.scan_iter(match=fleet.keys.workflow(run.id) + "*")]
        return not left and not await main.exists(fleet.keys.workflow_of)

    await eventually(lingered_out, linger + 10, "every key of the run expired after the linger")
    flaky_starts = sum(1 for s in await oracle.starts())
    report(
        f"workflow fan-in {CHILDREN} under kill -9 (run {run_index})",
        seconds=round(took, 1),
        kills=killed,
        member_starts=flaky_starts,
        merge_runs=len(merges),
    )
