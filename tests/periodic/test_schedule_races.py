"""Issue 14 items 5 and 7 and the suspected schedule races: skip_if_running is not defeated by
a manual run, a disable is honoured by the script that fires, and enable/disable/run-now racing
a delete recreate no state. The invariant checker runs after every test."""

from __future__ import annotations

import contextlib
from typing import Any
from unittest import mock

import orjson
import pytest
from redis.asyncio import Redis

from errands import Client, FakeClock, RegistrationError, ScheduleNotFoundError
from errands.errors import ErrandsError
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.periodic.store import ScheduleStore, make_periodic, ms
from errands.serialization import JSONSerializer
from errands.store.keys import Keys

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


pytestmark = pytest.mark.usefixtures("invariants")


def periodic(redis: Redis, namespace: str, clock: FakeClock) -> PeriodicEnqueuer:
    return PeriodicEnqueuer(redis, Keys(namespace), clock, JSONSerializer(), pool_id="p1")


async def queued(redis: Redis, namespace: str) -> list[str]:
    return [i.decode() for i in await redis.zrange(Keys(namespace).queue("tick"), 0, -1)]


async def finish(redis: Redis, namespace: str, job_id: str) -> None:
    """As an ack leaves a job that ran: its envelope gone (its queue entry too)."""
    keys = Keys(namespace)
    await redis.zrem(keys.queue("tick"), job_id)
    await redis.hdel(keys.jobs, job_id)


async def test_a_manual_run_does_not_defeat_skip_if_running(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """run_schedule_now overwrote the schedule's last job: once the (short) manual run ended,
    the next fire started while the long scheduled run was still going."""
    await client.add_schedule("every-minute", "tick", "@every 1m", skip_if_running=True)
    e = periodic(redis, namespace, clock)
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 1
    [scheduled] = await queued(redis, namespace)  # the long run: still unfinished
    manual = await client.run_schedule_now("every-minute")
    await finish(redis, namespace, manual)  # the manual run was quick
    clock.advance(60)
    assert await e.tick_once() == 0  # skipped: the scheduled run has not ended
    assert await queued(redis, namespace) == [scheduled]
    info = await client.schedule("every-minute")
    assert (info.runs, info.skipped, info.last_job_id) == (2, 1, manual)
    await finish(redis, namespace, scheduled)
    clock.advance(60)
    assert await e.tick_once() == 1
    for job_id in await queued(redis, namespace):
        await finish(redis, namespace, job_id)


async def test_a_schedule_disabled_after_the_pool_read_its_state_does_not_run(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    await client.add_schedule("every-minute", "tick", "@every 1m")
    e = periodic(redis, namespace, clock)
    await e.tick_once()
    read = e.store.read_states

    async def read_then_disable(names: Any) -> Any:
        states = await read(names)  # enabled, as the pool read it
        await client.disable_schedule("every-minute")
        return states

    e.store.read_states = read_then_disable  # type: ignore[method-assign]
    clock.advance(60)
    assert await e.tick_once() == 0
    assert await queued(redis, namespace) == []
    assert (await client.schedule("every-minute")).runs == 0


@pytest.mark.parametrize("action", ["enable", "disable", "run"])
async def test_an_action_racing_a_delete_recreates_no_state(
    redis: Redis, namespace: str, client: Client, action: str
) -> None:
    await client.add_schedule("nightly", "tick", "0 3 * * *")
    store = client._schedule_store
    definition = store.definition

    async def read_then_delete(name: str) -> Any:
        found = await definition(name)
        assert await client.delete_schedule(name)
        return found

    store.definition = read_then_delete  # type: ignore[method-assign]
    with contextlib.suppress(ScheduleNotFoundError):
        if action == "run":
            await client.run_schedule_now("nightly")
        else:
            await getattr(client, f"{action}_schedule")("nightly")
    keys = Keys(namespace)
    defined = await redis.hexists(keys.schedules, "nightly")
    # a state only beside its definition; a run only of a schedule still defined
    assert defined or not await redis.exists(keys.schedule_state("nightly"))
    assert defined or await queued(redis, namespace) == []
    if defined:
        await client.delete_schedule("nightly")


async def test_two_pools_defining_one_schedule_name_differently(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, caplog: Any
) -> None:
    """In a rolling deploy the old and the new code both define "report": they overwrote each
    other's definition, each fire time ran one of the two jobs, and schedules() flipped between
    them. The first registered stays; the other pool says so and does not fire its own."""
    keys = Keys(namespace)
    old = make_periodic("@every 1m", "tick", {"v": 1}, name="report")
    new = make_periodic("@every 1m", "tick", {"v": 2}, name="report")
    e_old = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [old], pool_id="old")
    e_new = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [new], pool_id="new")
    await e_old.tick_once()
    with caplog.at_level("ERROR", logger="errands.periodic"):
        await e_new.tick_once()
    assert "defined differently by the code of another running pool" in caplog.text
    seen = set()
    for _ in range(6):
        clock.advance(60)
        for e in (e_new, e_old, e_new):
            await e.tick_once()
        seen.add(orjson.dumps((await client.schedule("report")).args))
    ids = await queued(redis, namespace)
    envelopes = [orjson.loads(e) for e in await redis.hmget(keys.jobs, ids)]
    assert [env["a"] for env in envelopes] == [{"v": 1}] * 6  # each fire time once, the old one
    assert seen == {b'{"v":1}'}
    for job_id in ids:
        await finish(redis, namespace, job_id)


async def test_a_schedule_dropped_from_the_code_frees_its_name(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """A schedule removed from the code stayed registered for ever, and add_schedule refused
    its name."""
    keys = Keys(namespace)
    gone = make_periodic("0 3 * * *", "tick", name="nightly")
    e = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [gone], pool_id="old")
    await e.tick_once()
    with pytest.raises(RegistrationError, match="defined in a pool's code"):
        await client.add_schedule("nightly", "tick", "0 4 * * *")
    clock.advance(120)  # no pool registered it for two minutes: its code is gone
    await client.add_schedule("nightly", "tick", "0 4 * * *")
    info = await client.schedule("nightly")
    assert (info.source, info.spec) == ("runtime", "0 4 * * *")
    await client.delete_schedule("nightly")


async def test_a_schedule_in_conflict_does_not_keep_the_loop_busy(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """Hunt 1: pool B fired "report", a Client deleted it and pool A, whose code defines it
    differently, registered first. B stopped firing it but kept its due time: once that passed,
    _wait() answered 1 ms and run() ticked 455 times in half a second."""
    keys = Keys(namespace)
    new = make_periodic("@every 1m", "tick", {"v": 2}, name="report")
    old = make_periodic("@every 1m", "tick", {"v": 1}, name="report")
    b = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [new], pool_id="B")
    a = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), [old], pool_id="A")
    await b.tick_once()
    await client.delete_schedule("report")
    await a.tick_once()  # A's refresh comes first
    await b.tick_once()  # B: conflict
    clock.advance(50)
    await a.tick_once()
    await b.tick_once()
    assert "report" in b.conflicts
    clock.advance(10)  # past B's former due time; A's registration is still live
    assert b._wait() == b.refresh_interval  # the loop sleeps until its next refresh
    assert await b._tick() == 0


@pytest.mark.parametrize("before", ["unregistered", "stale"])
async def test_a_pool_registering_the_name_while_a_client_adds_it(
    redis: Redis, namespace: str, clock: FakeClock, client: Client, before: str
) -> None:
    """add_schedule checked the code definitions, then wrote (4 round trips): a pool that
    registered the name in between (a deploy, or a pool back after a pause) was not seen, so
    the runtime definition was stored beside the live code one (one state for two definitions),
    or the code one, live again, was dropped (its pool registers it again: the same)."""
    keys = Keys(namespace)
    code = make_periodic("@every 1m", "tick", name="nightly")
    registrar = ScheduleStore(redis, keys)
    now = ms(clock.now())
    if before == "stale":  # registered long ago: no pool registers it lately
        await registrar.refresh([code], now - 600_000, 60_000)
    real = redis.pipeline
    interfered: list[bool] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        async def interfering(*a: Any, **k: Any) -> Any:  # a pool registers it meanwhile
            if not interfered:
                interfered.append(True)
                await registrar.refresh([code], now, 60_000)
            return await execute(*a, **k)

        pipe.execute = interfering
        return pipe

    client = Client(mock.Mock(wraps=redis, pipeline=pipeline), namespace=namespace, clock=clock)
    with pytest.raises(RegistrationError, match="defined in a pool's code"):
        await client.add_schedule("nightly", "tick", "@every 2m")
    assert interfered
    assert await redis.hget(keys.schedules, "nightly") is None
    assert await redis.hget(keys.code_schedules, "nightly") == code.to_json()


async def test_pools_refreshing_other_schedules_do_not_starve_an_add(
    redis: Redis, namespace: str, clock: FakeClock
) -> None:
    """Every pool re-registers its code schedules each schedule_refresh (2 s): a ZADD of a new
    live-until time on the live ZSET. add_schedule WATCHed that key for any name, so in a busy
    deployment (many pools) a pool refreshing an unrelated schedule aborted it, 10 times in a
    row: ErrandsError. A name no pool's code defines is checked on the definitions alone."""
    keys = Keys(namespace)
    other = make_periodic("@every 1m", "tick", name="other")
    registrar = ScheduleStore(redis, keys)
    now = ms(clock.now())
    await registrar.refresh([other], now, 60_000)  # registered: its refreshes only ZADD
    real = redis.pipeline
    refreshes: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        async def interfering(*a: Any, **k: Any) -> Any:  # a pool refreshes "other" meanwhile
            refreshes.append(1)
            await registrar.refresh([other], now + len(refreshes), 60_000)
            return await execute(*a, **k)

        pipe.execute = interfering
        return pipe

    client = Client(mock.Mock(wraps=redis, pipeline=pipeline), namespace=namespace, clock=clock)
    await client.add_schedule("nightly", "tick", "@every 2m")
    assert refreshes
    assert await redis.hget(keys.schedules, "nightly") is not None


async def test_an_add_aborted_ten_times_gives_up_having_written_nothing(
    redis: Redis, namespace: str, clock: FakeClock
) -> None:
    """Replacing a code definition no pool registered lately, while pools keep changing its
    live time (each try aborted): ErrandsError after 10 tries, telling to call again."""
    keys = Keys(namespace)
    code = make_periodic("@every 1m", "tick", name="nightly")
    registrar = ScheduleStore(redis, keys)
    now = ms(clock.now())
    await registrar.refresh([code], now - 600_000, 60_000)  # stale: its code is gone
    real = redis.pipeline
    tries: list[int] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real(*args, **kwargs)
        execute = pipe.execute

        async def interfering(*a: Any, **k: Any) -> Any:  # its live time changes (still stale)
            tries.append(1)
            await redis.zadd(keys.code_schedules_live, {"nightly": now - 500_000 + len(tries)})
            return await execute(*a, **k)

        pipe.execute = interfering
        return pipe

    client = Client(mock.Mock(wraps=redis, pipeline=pipeline), namespace=namespace, clock=clock)
    with pytest.raises(ErrandsError, match=r"10 times .* nothing written; call add_schedule again"):
        await client.add_schedule("nightly", "tick", "@every 2m")
    assert len(tries) == 10
    assert await redis.hget(keys.schedules, "nightly") is None
    assert await redis.hget(keys.code_schedules, "nightly") == code.to_json()
