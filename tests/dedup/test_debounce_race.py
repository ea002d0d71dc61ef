"""Racing debounce enqueuers (20 connections) mixing delays, a due time in the past and
priorities, round after round: one job is left, stored once, and where it waits always agrees
with the envelope the last replace gave it (scheduled at its due time, or queued at its
priority), whatever order Redis ran the calls in."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from errands.clock import to_ms
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants


def _options(rng: random.Random) -> dict[str, Any]:
    pick = rng.randrange(4)
    options: dict[str, Any] = {"priority": rng.choice([0, 0, 5, -3, 1000])}
    if pick == 1:
        options["delay"] = rng.choice([0.5, 30, 600])
    elif pick == 2:
        options["at"] = datetime.now(UTC) - timedelta(seconds=5)  # due already
    return options


async def test_racing_debounce_enqueuers_leave_one_consistent_job(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    rng = random.Random(7)
    enqueuers = [Enqueuer.from_url(redis_url, namespace=namespace) for _ in range(20)]
    d = Dedup("u7", debounce=True)
    holder = None
    try:
        for round_ in range(15):
            calls = [(e, {"r": round_, "i": i}, _options(rng)) for i, e in enumerate(enqueuers)]
            jobs = await asyncio.gather(
                *(e.enqueue("notify", args, dedup=d, **opts) for e, args, opts in calls)
            )
            statuses = [j.dedup.status for j in jobs if j is not None and j.dedup is not None]
            assert len(statuses) == 20
            assert statuses.count("enqueued") == (1 if round_ == 0 else 0)
            assert set(statuses) <= {"enqueued", "replaced"}
            ids = {j.id for j in jobs if j is not None}
            assert len(ids) == 1 and (holder is None or ids == {holder})
            holder = ids.pop()
            assert await redis.hlen(keys.jobs) == 1
            env = orjson.loads(await redis.hget(keys.jobs, holder) or b"{}")
            assert env["a"]["r"] == round_  # the last replace of this round's calls
            prio = await redis.hget(keys.priorities, holder)
            assert int(prio or 0) == env.get("p", 0)
            queued = await redis.zscore(keys.queue("notify"), holder)
            scheduled = await redis.zscore(keys.scheduled("notify"), holder)
            if "d" in env:
                assert queued is None and scheduled == to_ms(env["d"])
            else:
                assert scheduled is None and queued is not None
            await assert_invariants(redis, namespace)
    finally:
        await asyncio.gather(*(e.aclose() for e in enqueuers))
