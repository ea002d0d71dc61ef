"""Scenario 10 of issue 8: 10,000 jobs due within the same second, four pools promoting them
from the scheduled set at once (real due times, 10 s ahead).

Bound: every job is moved to its queue exactly once (the queue sequence counter, bumped once per
move, grows by exactly 10,000) and runs exactly once; none is moved or started before its due
time; all have started within 10 s of the last due time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from tests.support.procs import eventually

from .common import FAST, Fleet, Oracle, assert_nothing_stuck, report

pytestmark = pytest.mark.faults

JOBS = 10_000
# the due times are this far ahead: enqueueing 10,000 jobs must end before them, with time left to
# watch them wait (about 1 s on an idle machine; over 3 s under a load of 10-25 on two cores)
AHEAD = 10.0


async def test_ten_thousand_jobs_due_in_the_same_second(
    fleet: Fleet, main: Redis, oracle: Oracle, fault_redis_url: str, namespace: str
) -> None:
    fleet.env.update(FAST, FAULT_CONCURRENCY="50")
    keys = fleet.keys
    for _ in range(4):
        fleet.start()
    await fleet.wait_ready(main)
    due = math.ceil(time.time()) + AHEAD
    items: list[Any] = [
        ("noop", None, {"at": datetime.fromtimestamp(due + i / JOBS, UTC)}) for i in range(JOBS)
    ]
    async with Enqueuer.from_url(fault_redis_url, namespace=namespace) as enqueuer:
        ids = [j.id for j in await enqueuer.enqueue_many(items)]
    seq_before = int(await main.get(keys.seq))

    # nothing moves early: up to just before the first due time, all wait in the scheduled set
    early = []
    while time.time() < due - 0.05:
        early.append(
            (await main.zcard(keys.scheduled("noop")), await main.zcard(keys.queue("noop")))
        )
        await asyncio.sleep(0.05)
    assert early, f"enqueueing took over {AHEAD} s: nothing could be watched before due"
    assert set(early) == {(JOBS, 0)}, set(early)

    async def promoted() -> float | None:
        return time.time() if await main.zcard(keys.scheduled("noop")) == 0 else None

    promoted_at = await eventually(promoted, 20, "every job to be promoted", interval=0.02)
    await eventually(lambda: _count_at_least(oracle, JOBS), 30, "every job to start", interval=0.1)
    all_started_at = time.time()
    starts = await oracle.starts()
    counts = Counter(s.id for s in starts)
    too_early = [s for s in starts if s.t < s.run_at - 0.001]  # due times are kept in ms
    seq_moves = int(await main.get(keys.seq)) - seq_before
    await assert_nothing_stuck(main, keys, ["noop"])
    processed = int((await main.hgetall(keys.stats))[b"processed"])
    report(
        "10. 10,000 jobs due in one second, 4 pools promoting",
        jobs=JOBS,
        moved=seq_moves,
        started_once=sum(1 for n in counts.values() if n == 1),
        started_twice=sum(1 for n in counts.values() if n > 1),
        early=len(too_early),
        promoted_after_last_due_s=promoted_at - (due + 1),
        all_started_after_last_due_s=all_started_at - (due + 1),
    )
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert seq_moves == JOBS and processed == JOBS
    assert not too_early, too_early[:3]
    assert all_started_at - (due + 1) < 10.0


async def _count_at_least(oracle: Oracle, n: int) -> bool:
    return await oracle.count("starts") >= n
