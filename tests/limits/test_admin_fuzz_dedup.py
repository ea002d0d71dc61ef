"""test_admin_fuzz's mix with deduplicated enqueues among the steps: debounced, rerun-latest
and until-started requests of a few keys, with a partition or none, a priority, now or later.
A debounce pushes a queued holder back to the scheduled set or takes it forward, a request
replaces a waiting job's envelope, priority and partition (lua/enqueue_dedup.lua, lib/dedup.lua):
each step leaves the checker clean, the partitions' turns and rate waits included (none of a
name with nothing indexed: lib/dedup.lua dedup_unindex takes them when a job leaves the queue or
its partition, 9d51348), every job ends in the drain and no rate log counts more than its rate.
Red with enqueue_dedup.lua's `turns` made nil (the push-back and the partition change leaving
turns and waits behind): 7 of these 20."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from errands import Dedup, Enqueuer
from tests.limits.test_admin_fuzz import PARTS, Fuzz
from tests.support.invariants import assert_invariants

RATE = ";R=3/60000"


class DedupFuzz(Fuzz):
    """A step is, one time in seven, a deduplicated enqueue (through ``enq``)."""

    enq: Enqueuer

    async def step(self, step: int) -> None:
        rnd = self.rnd
        if rnd.random() >= 0.15:
            await super().step(step)
            return
        key = f"k{rnd.randrange(3)}"
        dedup = rnd.choice(
            (Dedup(key, debounce=True), Dedup(key, until="finished", rerun_latest=True), Dedup(key))
        )
        job = await self.enq.enqueue(
            "sms",
            {"n": step},
            dedup=dedup,
            partition=rnd.choice([*PARTS, None]),
            delay=rnd.choice((None, None, 5.0, 4000.0)),
            priority=rnd.choice((0, 0, 3, -2)),
        )
        if job is not None and job.id not in self.ids:
            self.ids.append(job.id)


async def _run(fuzz: DedupFuzz, redis: Redis, namespace: str, rated: bool) -> None:
    async with Enqueuer(redis, namespace=namespace, strict=None) as enq:
        fuzz.enq = enq
        for _ in range(16):
            job = await enq.enqueue("sms", {}, partition=fuzz.rnd.choice(PARTS))
            assert job is not None
            fuzz.ids.append(job.id)
        for pool in fuzz.held:
            await fuzz.scripts.heartbeat(pool, b"{}", 60_000, mode="register")
        for step in range(300):
            await fuzz.step(step)
            await assert_invariants(redis, namespace, context=f"step {step}")
            if rated:
                counted = await fuzz.counted()
                assert all(n <= 3 for n in counted.values()), (step, counted)


@pytest.mark.parametrize("resend", [False, True])
@pytest.mark.parametrize("seed", range(200, 206))
async def test_dedup_enqueues_among_admin_calls_leave_no_turn_behind(
    redis: Redis, namespace: str, seed: int, resend: bool
) -> None:
    fuzz = DedupFuzz(redis, namespace, random.Random(seed), resend)
    await _run(fuzz, redis, namespace, rated=False)
    await fuzz.drain()
    await assert_invariants(redis, namespace, drained=True)


@pytest.mark.parametrize("resend", [False, True])
@pytest.mark.parametrize("seed", range(200, 204))
async def test_dedup_enqueues_among_admin_calls_on_rated_partitions(
    redis: Redis, namespace: str, seed: int, resend: bool
) -> None:
    fuzz = DedupFuzz(redis, namespace, random.Random(seed), resend, rate=RATE)
    await _run(fuzz, redis, namespace, rated=True)
