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
import pytest
from redis.asyncio import Redis

from errands import Client
from errands.clock import SystemClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import ScheduleStore, make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from errands.store.redisclock import RedisAlignedClock
from errands.store.scripts import Scripts
from tests.support.resend import snapshot

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
    await e._tick()  # (it fired the slot a day ahead; a slot due meanwhile it may fire)
    redis_now = (await redis.time())[0]
    assert all(j["m"]["fire_time"] - redis_now < 2.0 for j in await queued(redis, keys, "tick"))
    before = len(await queued(redis, keys, "tick"))
    host.step = 0.0  # NTP steps it back
    fired = 0
    for _ in range(3):  # 0.45 s pass on the monotonic clock (under the 1 s refusal, with the
        host.elapsed += 0.15  # error of the sync; each step passes a fire time)
        fired += await e._tick()
    assert fired == 3  # (0: `last` was a day ahead)
    assert len(await queued(redis, keys, "tick")) == before + 3
    redis_now = (await redis.time())[0]
    for job in await queued(redis, keys, "tick"):
        assert job["m"]["fire_time"] - redis_now < 2.0


async def test_schedule_fire_refuses_a_slot_ahead_of_the_redis_clock(
    redis: Redis, namespace: str
) -> None:
    """No pool can write a `last` in the future: each mode that writes it refuses a slot later
    than the Redis clock plus the tolerance, writing nothing (a re-send: tests/store/
    test_resend_table.py, the rows fire-*-ahead)."""
    keys = Keys(namespace)
    store = ScheduleStore(redis, keys)
    periodic = make_periodic("@every 1m", "report")
    now = (await redis.time())[0] * 1000
    await store.refresh([periodic], now, 60_000)
    ahead = now + int(DAY * 1000)
    init = {"slot_ms": ahead, "next_ms": ahead + 60_000, "now_ms": ahead, "ahead_ms": 1000}
    assert await store.fire(periodic, "init", **init) == ("ahead", "")
    assert not await redis.exists(keys.schedule_state("report"))
    await store.fire(periodic, "init", slot_ms=now - 60_000, next_ms=now, now_ms=now - 60_000)
    before = await snapshot(redis, namespace)
    for mode in ("fire", "missed", "advance"):
        answer = await store.fire(
            periodic, mode, slot_ms=ahead, next_ms=ahead + 60_000, now_ms=ahead,
            envelope=b'{"n":"report"}', job_id=f"j-{mode}", pool_id="p1", ahead_ms=1000,
        )  # fmt: skip
        assert answer == ("ahead", ""), mode
    assert await snapshot(redis, namespace) == before
    answer = await store.fire(
        periodic, "fire", slot_ms=now, next_ms=now + 60_000, now_ms=now,
        envelope=b'{"n":"report"}', job_id="j-now", pool_id="p1", ahead_ms=1000,
    )  # fmt: skip
    assert answer == ("fired", "j-now")  # a slot at the Redis clock fires


class DayAheadHost(SystemClock):
    """A host whose clock is a day ahead, read as it is (the pool never aligned it)."""

    def now(self) -> float:
        return time.time() + DAY


async def test_a_pool_whose_clock_runs_ahead_writes_no_future_last(
    redis: Redis, namespace: str, caplog: Any
) -> None:
    keys = Keys(namespace)
    code = make_periodic("@every 1m", "tick", name="minutely")
    e = PeriodicEnqueuer(redis, keys, DayAheadHost(), JSONSerializer(), [code], pool_id="p1")
    with caplog.at_level("ERROR", logger="errands.periodic"):
        for _ in range(3):
            assert await e.tick_once() == 0
    assert await redis.hget(keys.schedule_state("minutely"), "last") is None
    refused = [r for r in caplog.records if "ahead of the Redis server's" in r.getMessage()]
    assert len(refused) == 1  # once per schedule
    assert e._wait() > 1.0  # no busy loop: again after the next refresh


class RedisWallClock:
    """The Redis server's clock as a pool follows it: it may step."""

    def __init__(self) -> None:
        self.t = START + 5

    def now(self) -> float:
        return self.t


@pytest.mark.parametrize("source", ["runtime", "code"])
async def test_a_last_written_while_the_redis_clock_was_ahead_is_logged(
    redis: Redis, namespace: str, caplog: Any, source: str
) -> None:
    """The Redis server's own clock a day ahead for a while: the fire then is not early by
    the only clock there is, but its `last` holds the schedule for a day once the clock is
    back. That is logged, once, and delete_schedule (then add_schedule again for a runtime
    schedule) starts it afresh, as docs/periodic.md says."""
    clock = RedisWallClock()
    client = Client(redis, namespace=namespace, clock=clock)  # type: ignore[arg-type]
    code = [make_periodic("@every 1m", "tick")] if source == "code" else []
    if source == "runtime":
        await client.add_schedule("tick", "tick", "@every 1m")
    keys = Keys(namespace)
    e = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), code, pool_id="p1")  # type: ignore[arg-type]
    await e.tick_once()
    clock.t += 60
    assert await e.tick_once() == 1
    clock.t += DAY  # a bad RTC, an NTP step
    assert await e.tick_once() == 1
    clock.t -= DAY  # corrected
    fired = 0
    with caplog.at_level("ERROR", logger="errands.periodic"):
        for _ in range(120):  # two hours, minute by minute
            clock.t += 60
            fired += await e.tick_once()
    assert fired == 0  # the schedule waits for its `last`, a day ahead ...
    logged = [r for r in caplog.records if "ahead of the clock" in r.getMessage()]
    assert len(logged) == 1 and "delete_schedule" in logged[0].getMessage()  # ... said once
    await client.delete_schedule("tick")
    if source == "runtime":
        await client.add_schedule("tick", "tick", "@every 1m")
    clock.t += e.refresh_interval  # the pool reads the state in the future at each refresh
    await e.tick_once()  # the state is gone (a code schedule: registered again): from now
    clock.t += 60
    assert await e.tick_once() == 1
