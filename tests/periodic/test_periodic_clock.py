"""Hunt 1: a clock ahead fired early, then silenced the schedule for as long as it was ahead.
The pool's clock (RedisAlignedClock over SystemClock) added a stale offset to the host's wall
clock, so a step of the host's clock between two syncs fired a slot a day ahead; the `last` it
wrote held every pool for a day, and so did one written while the Redis clock was a day ahead,
without a word. Now: the pool's clock counts from its latest sync on the monotonic clock,
schedule_fire.lua refuses a slot ahead of the Redis clock, and a `last` ahead is logged."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Client
from errands.clock import SystemClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.redisclock import RedisAlignedClock
from errands.store.scripts import Scripts

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


class SteppingHost(SystemClock):
    """The host's clocks: its wall clock the test steps, its monotonic one the test moves on
    (no sleep: the Redis server's clock stands still meanwhile, nearly)."""

    def __init__(self) -> None:
        self.step = 0.0
        self.elapsed = 0.0

    def now(self) -> float:
        return time.time() + self.step

    def monotonic(self) -> float:
        return time.monotonic() + self.elapsed


async def queued(redis: Redis, keys: Keys, name: str) -> list[dict[str, Any]]:
    ids = await redis.zrange(keys.queue(name), 0, -1)
    return [orjson.loads(e) for e in await redis.hmget(keys.jobs, ids)] if ids else []


async def test_a_step_of_the_host_clock_between_syncs_moves_nothing(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    host = SteppingHost()
    aligned = RedisAlignedClock(host, Scripts(redis, keys))
    await Client(redis, namespace=namespace).add_schedule("tick", "tick", "@every 100ms")
    e = PeriodicEnqueuer(redis, keys, aligned, JSONSerializer(), pool_id="p1")
    await e.tick_once()  # synced, state initialised
    host.step = DAY  # a VM resumed, a bad NTP step: between two syncs
    assert abs(aligned.now() - time.time()) < 1.0
    assert await e._tick() == 0  # (it fired the slot a day ahead)
    host.step = 0.0  # NTP steps it back
    fired = 0
    for _ in range(3):  # 0.75 s pass (on the monotonic clock)
        host.elapsed += 0.25
        fired += await e._tick()
    assert fired == 3  # (0: `last` was a day ahead)
    redis_now = (await redis.time())[0]
    for job in await queued(redis, keys, "tick"):
        assert job["m"]["fire_time"] - redis_now < 2.0
