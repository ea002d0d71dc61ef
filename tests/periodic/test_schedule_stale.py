"""A schedule removed from the code: listed as stale (with the time its registration lapsed),
never fired, and delete_schedule removes it."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from errands import Client, FakeClock, RegistrationError, SystemClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys

from .support import drop_jobs, pool

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


pytestmark = pytest.mark.usefixtures("invariants")


async def test_a_schedule_removed_from_the_code_is_listed_stale_and_never_fires(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """After a deploy removed "minutely" from the code, schedules() listed it enabled, with a
    next fire time in the past, for ever. It is stale once no pool registered it for the live
    time, says until when it was registered, never fires, and delete_schedule removes it."""
    gone = make_periodic("@every 1m", "tick", name="minutely")
    old = pool(redis, namespace, clock, [gone], "old")
    await old.tick_once()
    clock.advance(60)
    assert await old.tick_once() == 1
    info = await client.schedule("minutely")
    assert (info.enabled, info.stale) == (True, False)
    registered_until = info.registered_until
    assert registered_until is not None and registered_until >= clock.now() + 59
    new = pool(redis, namespace, clock, [], "new")  # the old pool is gone; the new code lacks it
    fired = 0
    for _ in range(10):
        clock.advance(60)
        fired += await new.tick_once()
    assert fired == 0
    info = await client.schedule("minutely")
    assert (info.source, info.enabled, info.stale) == ("code", True, True)
    assert info.registered_until == registered_until  # stale since then
    assert await client.delete_schedule("minutely")
    clock.advance(60)
    assert await new.tick_once() == 0
    assert [i.name for i in await client.schedules()] == []
    await drop_jobs(redis, namespace)


async def test_a_schedule_still_in_a_running_pools_code_is_not_stale(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    code = make_periodic("@every 1m", "tick", name="minutely")
    e = pool(redis, namespace, clock, [code], "p1")
    for _ in range(40):  # 40 minutes: its pool registers it at every refresh
        clock.advance(60)
        await e.tick_once()
    info = await client.schedule("minutely")
    assert not info.stale and info.registered_until is not None
    assert info.registered_until > clock.now()
    await client.add_schedule("runtime", "tick", "@every 1h")
    runtime = await client.schedule("runtime")
    assert (runtime.stale, runtime.registered_until) == (False, None)
    await drop_jobs(redis, namespace)


class DayAheadHost(SystemClock):
    """A Client host whose clock is a day ahead."""

    def now(self) -> float:
        return time.time() + 86_400


async def test_staleness_is_judged_on_the_redis_clock_not_the_clients(
    redis: Redis, namespace: str
) -> None:
    """Pools register their code on the Redis server's clock: a Client whose host clock ran a
    day ahead listed every live code schedule as stale (and let add_schedule take its name)."""
    code = make_periodic("@every 1m", "tick", name="minutely")
    e = PeriodicEnqueuer(redis, Keys(namespace), SystemClock(), JSONSerializer(), [code])
    await e.refresh()
    client = Client(redis, namespace=namespace, clock=DayAheadHost())
    assert not (await client.schedule("minutely")).stale
    with pytest.raises(RegistrationError, match="defined in a pool's code"):
        await client.add_schedule("minutely", "tick", "@every 1h")
    await client.delete_schedule("minutely")


async def test_a_short_refresh_never_shortens_a_long_one_s_registration(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    # pool A refreshes every 100 s (live 300 s), pool B every 2 s (live 60 s): B registering
    # after A lowered A's live-until time, so once B stopped the schedule was listed stale
    # while A still ran it, and add_schedule could take its name
    code = [make_periodic("@every 1m", "tick", {}, name="nightly")]
    keys = Keys(namespace)
    js = JSONSerializer()
    a = PeriodicEnqueuer(redis, keys, clock, js, code, pool_id="A", refresh_interval=100)
    b = PeriodicEnqueuer(redis, keys, clock, js, code, pool_id="B", refresh_interval=2)
    await a.tick_once()
    clock.advance(1)
    await b.tick_once()  # then B stops
    clock.advance(69)
    info = await client.schedule("nightly")
    assert info is not None and not info.stale
    with pytest.raises(RegistrationError):
        await client.add_schedule("nightly", "tick", "@every 1m", {"taken": True})
    await drop_jobs(redis, namespace)


@pytest.mark.parametrize(("refresh", "live"), [(2.0, 60.0), (20.0, 60.0), (25.0, 75.0)])
async def test_a_registration_lasts_the_longer_of_60_s_and_3_refreshes(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, refresh: float, live: float
) -> None:
    """docs/periodic.md: a schedule no pool registered for max(60 s, 3 x schedule_refresh) is
    stale (and its name free)."""
    code = [make_periodic("@every 1m", "tick", name="minutely")]
    e = PeriodicEnqueuer(
        redis, Keys(namespace), clock, JSONSerializer(), code, refresh_interval=refresh
    )
    await e.refresh()
    info = await client.schedule("minutely")
    assert info is not None and info.registered_until == pytest.approx(clock.now() + live)
    clock.advance(live - 0.01)
    assert not (await client.schedule("minutely")).stale
    clock.advance(0.02)
    assert (await client.schedule("minutely")).stale
    await client.delete_schedule("minutely")
