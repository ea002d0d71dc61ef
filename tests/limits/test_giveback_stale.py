"""Give-backs re-sent late (redis-py re-sends after a timeout): after the job was fetched again
by the other pool or by the same one, started or given back again. A re-send never uncounts
anything: with a window of a minute (no time passes), the rate log always holds exactly the
starts of the jobs started and of those still held (type-wide and per partition)."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from errands import Enqueuer
from errands.clock import SystemClock
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.scripts import Fetched, Scripts
from errands.worker.settler import Settler
from tests.limits.test_giveback import _counted


@pytest.mark.parametrize(
    ("spec", "partition", "field"),
    [("r=40/60000", "", "60000"), ("R=40/60000", "acme", "60000:acme")],
    ids=["type-wide", "per-partition"],
)
async def test_late_resent_give_backs_uncount_nothing(
    redis: Redis, namespace: str, spec: str, partition: str, field: str
) -> None:
    rng = random.Random(7)
    opts = {"partition": partition} if partition else {}
    async with Enqueuer(redis, namespace=namespace, strict=None) as enqueuer:
        await enqueuer.enqueue_many([("sms", {}, opts) for _ in range(12)])  # type: ignore[misc]
    scripts = Scripts(redis, Keys(namespace))
    settlers = {}
    for pool in ("p", "q"):
        await scripts.heartbeat(pool, b"{}", 60_000, mode="register")
        settlers[pool] = Settler(
            scripts, pool, SystemClock(), JSONSerializer(), dead_max_jobs=10,
            dead_max_age=60.0, history=False,
        )  # fmt: skip
    held: list[tuple[str, Fetched]] = []
    sent: list[tuple[str, Fetched]] = []  # every give-back sent: re-sent later at random
    started = 0
    for _ in range(300):
        roll = rng.random()
        if roll < 0.35:
            pool = rng.choice("pq")
            got = await scripts.fetch(pool, 1, rng.randint(1, 3), [("sms", 0)], specs={"sms": spec})
            held += [(pool, f) for f in got]
        elif held and roll < 0.65:
            pool, item = held.pop(rng.randrange(len(held)))
            await settlers[pool].requeue_fetched(item, "sms")
            sent.append((pool, item))
        elif held and roll < 0.7:
            held.pop(rng.randrange(len(held)))  # it started (never acked here: it stays counted)
            started += 1
        elif sent:
            pool, item = rng.choice(sent)  # a late re-send
            await settlers[pool].requeue_fetched(item, "sms")
        assert await _counted(redis, namespace, field) == started + len(held)
    assert started > 3 and len(sent) > 20
