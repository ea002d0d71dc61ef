"""A schedule and manual enqueues sharing one dedup key: whichever holds it, the others are
skipped or dropped naming it; a stored schedule keeps its Dedup."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from errands import Client, Dedup, Enqueuer, FakeClock, RegistrationError
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import PeriodicSchedule, make_periodic
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from tests.support.invariants import assert_invariants

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


async def test_schedule_and_manual_enqueues_on_one_key(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    keys = Keys(namespace)
    clock = FakeClock(START)
    d = Dedup("nightly", until="finished")
    periodic = make_periodic("@every 1m", "report", dedup=d)
    e = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [periodic], pool_id="p")
    await e.tick_once()  # the schedule starts from now

    manual = await enqueuer.enqueue("report", {"by": "hand"}, dedup=d)
    assert manual is not None and manual.dedup is not None and manual.dedup.enqueued
    clock.advance(60)
    assert await e.tick_once() == 0  # the fire is skipped: the manual job holds the key
    state = await redis.hgetall(keys.schedule_state("report"))
    assert state[b"skipped"] == b"1"
    assert await redis.hlen(keys.jobs) == 1

    assert await client.destroy(manual.id)
    clock.advance(60)
    assert await e.tick_once() == 1  # free again: this fire runs, and holds the key
    fired = (await redis.hgetall(keys.schedule_state("report")))[b"job"].decode()
    assert await redis.hget(keys.dedup, "report:nightly") == fired.encode()
    again = await enqueuer.enqueue("report", {"by": "hand"}, dedup=d)
    assert again is not None and again.dedup is not None
    assert (again.dedup.status, again.dedup.holder) == ("dropped", fired)
    # a manual run of the schedule is deduplicated too: it names the holder
    assert await e.store.run_now(periodic, JSONSerializer(), clock.now()) == ("deduped", fired)
    assert await redis.hlen(keys.jobs) == 1
    await assert_invariants(redis, namespace)


async def test_client_run_schedule_now_is_deduplicated_and_returns_the_holders_id(
    redis: Redis, namespace: str, enqueuer: Enqueuer, client: Client
) -> None:
    d = Dedup("nightly", until="finished")
    await client.add_schedule("report", "report", "@every 1h", dedup=d)
    manual = await enqueuer.enqueue("report", {"by": "hand"}, dedup=d)
    assert manual is not None and manual.dedup is not None and manual.dedup.enqueued
    assert await client.run_schedule_now("report") == manual.id
    assert await redis.hlen(Keys(namespace).jobs) == 1  # nothing else stored
    await assert_invariants(redis, namespace)


async def test_a_stored_schedule_keeps_its_dedup(client: Client) -> None:
    d = Dedup("k", throttle=90.0)
    added = await client.add_schedule("s", "report", "@every 1m", dedup=d)
    assert added.dedup == d
    back = PeriodicSchedule.from_json("s", added.to_json(), "runtime")
    assert back.dedup == d
    stored = (await client._schedule_store.runtime_definitions())["s"]
    assert PeriodicSchedule.from_json("s", stored, "runtime").dedup == d


def test_a_schedule_refuses_debounce_and_rerun() -> None:
    for d in (Dedup("k", debounce=True), Dedup("k", until="finished", rerun_latest=True)):
        with pytest.raises(RegistrationError):
            make_periodic("@every 1m", "report", dedup=d)
