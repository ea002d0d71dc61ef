"""Two pools fetching one job name under different per-partition limits at once (a rolling
deploy, or the same limits listed in another order): lib/limreadmit.lua's readmission of the
partitions held back must neither start a job beyond the fetching pool's limits nor keep the
pools from the partitions that may run (review probes of d3dc785)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from redis.asyncio import Redis

from errands.enqueuer import EnqueueItem
from errands.store.keys import Keys
from errands.store.records import Acked, Fetched
from errands.store.scripts import Scripts
from tests.support.ready import ready_to_fetch


async def _ack(scripts: Scripts, pool: str, got: list[Fetched]) -> None:
    if got:
        done = [Acked(f.id, "sms", b"null", 1, 0, 1, f.token) for f in got]
        await scripts.ack(pool, done, False, 1, False)


@pytest.mark.parametrize(("old", "new"), [("c=1", "c=2"), ("R=1/600000", "R=2/600000")])
async def test_a_deploy_starts_no_job_beyond_the_fetching_pools_limits(
    redis: Redis, namespace: str, old: str, new: str
) -> None:
    """Pools A (old limits) and B (new, looser) alternate, jobs acked at random: a partition
    never runs (or starts, with the rate) more than 2, and A never starts a job of a partition
    that runs (or started) one already."""
    keys = Keys(namespace)
    parts = [f"c{i}" for i in range(60)]
    jobs: list[EnqueueItem] = [("sms", {}, {"partition": p}) for p in parts for _ in range(5)]
    scripts = await ready_to_fetch(redis, namespace, jobs, pools=("A", "B"))
    rnd = random.Random(7)
    held: dict[str, list[Fetched]] = {"A": [], "B": []}
    live: Counter[str] = Counter()
    part_of: dict[str, str] = {}
    over: list[tuple[int, str]] = []
    for step in range(200):
        pool, spec = ("A", old) if step % 2 == 0 else ("B", new)
        got = await scripts.fetch(pool, 1, rnd.randint(1, 8), [("sms", 0)], specs={"sms": spec})
        assert got is not None
        for f in got:
            p = str(await redis.hget(keys.partitions, f.id))
            part_of[f.id] = p
            if pool == "A" and live[p] >= 1:
                over.append((step, p))
            live[p] += 1
            held[pool].append(f)
        assert max(live.values(), default=0) <= 2
        for name in ("A", "B"):
            done = [f for f in held[name] if rnd.random() < 0.3]
            await _ack(scripts, name, done)
            for f in done:
                held[name].remove(f)
                live[part_of[f.id]] -= 0 if old.startswith("R") else 1  # (a start stays counted)
    assert over == []


@pytest.mark.parametrize(
    "spec_b",
    [
        pytest.param("c=1;R=5000/60000;R=1000/1000", id="same-limits-other-order"),
        pytest.param("c=2;R=1000/1000;R=5000/60000", id="deploy-c1-to-c2"),
    ],
)
async def test_pools_under_two_specs_keep_serving_a_free_partition(
    redis: Redis, namespace: str, spec_b: str
) -> None:
    """150 partitions busy under c=1 (a job running, one queued each) and a free partition
    with a backlog; pools A and B fetch one job in turn, acking it. Before d3dc785 every fetch
    took one of the free partition's jobs; since, each fetch under the other spec starts the
    readmission over (HSCAN from 0) and puts the busy partitions back in the turns, where the
    serve spends its budget (4 x 1 + 16) on them and answers nothing."""
    busy: list[EnqueueItem] = [
        ("sms", {}, {"partition": f"b{i}"}) for i in range(150) for _ in range(2)
    ]
    scripts = await ready_to_fetch(redis, namespace, busy, pools=("A", "B"))
    spec_a = "c=1;R=1000/1000;R=5000/60000"
    got = await scripts.fetch("A", 1, 150, [("sms", 0)], specs={"sms": spec_a})
    assert got is not None and len(got) == 150
    free: list[EnqueueItem] = [("sms", {}, {"partition": "free"})] * 100
    await ready_to_fetch(redis, namespace, free, pools=())
    empty = 0
    for step in range(80):
        pool, spec = ("A", spec_a) if step % 2 == 0 else ("B", spec_b)
        got = await scripts.fetch(pool, 1, 1, [("sms", 0)], specs={"sms": spec})
        assert got is not None
        await _ack(scripts, pool, got)
        empty += step >= 40 and len(got) == 0  # (the first: the 150 turns of the first fetch)
    assert empty == 0, f"{empty} of 40 fetches took nothing, a job of 'free' runnable"
