"""A runtime schedule replaced by add_schedule: no fire of the old definition once the call
returned (schedule_fire.lua checks the definition the pool fires)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from errands import Client, ErrandsError, FakeClock
from tests.support.resend import Recorder

from .support import drop_jobs, pool, queued_args

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


pytestmark = pytest.mark.usefixtures("invariants")


async def test_a_replaced_runtime_schedule_never_fires_its_old_definition(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """Pools fired the definition they read at their last refresh: after add_schedule replaced
    it, the next tick before the next refresh (up to schedule_refresh seconds) ran the old job.
    The script that fires checks the definition; the pool re-reads it and fires the new one."""
    await client.add_schedule("report", "tick", "@every 1m", {"v": 1})
    e = pool(redis, namespace, clock, [], "p1")
    await e.tick_once()
    clock.advance(60)
    assert await e.tick_once() == 1
    clock.advance(60)
    await client.add_schedule("report", "tick", "@every 1m", {"v": 2})  # acknowledged here
    assert await e._tick() == 1  # a tick between two refreshes, as run() makes them
    assert await queued_args(redis, namespace) == [{"v": 1}, {"v": 2}]
    clock.advance(60)
    assert await e._tick() == 1
    assert await queued_args(redis, namespace) == [{"v": 1}, {"v": 2}, {"v": 2}]
    await drop_jobs(redis, namespace)


async def test_a_replaced_runtime_schedule_with_another_spec_keeps_no_old_slot(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """The old definition, every minute; the new one, hourly: no minute run after the replace."""
    await client.add_schedule("report", "tick", "@every 1m", {"v": 1})
    e = pool(redis, namespace, clock, [], "p1")
    await e.tick_once()
    await client.add_schedule("report", "tick", "@every 1h", {"v": 2})
    for _ in range(59):
        clock.advance(60)
        assert await e._tick() == 0
    clock.advance(60)  # START + 1 h + 5 s
    assert await e._tick() == 1
    assert await queued_args(redis, namespace) == [{"v": 2}]
    await drop_jobs(redis, namespace)


async def test_a_manual_run_racing_a_replace_runs_the_new_definition(
    redis: Redis, namespace: str, client: Client
) -> None:
    """run_schedule_now read the definition, then fired it: a replace acknowledged in between
    ran the old one. The script refuses it; the run reads the definition again."""
    await client.add_schedule("report", "tick", "@every 1h", {"v": 1})
    store = client._schedule_store
    fire = store._fire

    async def replaced_first(keys: Any = (), args: Any = (), client_: Any = None) -> Any:
        if args[0] == "manual" and b'"v":1' in args[7]:
            await client.add_schedule("report", "tick", "@every 1h", {"v": 2})
        return await fire(keys=keys, args=args)

    store._fire = replaced_first  # type: ignore[assignment]
    await client.run_schedule_now("report")
    assert await queued_args(redis, namespace) == [{"v": 2}]
    await drop_jobs(redis, namespace)


async def test_a_fire_resent_after_a_replace_gives_its_first_answer(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """The fence must not change the answer of a re-sent call: it fired, and says so."""
    await client.add_schedule("report", "tick", "@every 1m", {"v": 1})
    e = pool(redis, namespace, clock, [], "p1")
    await e.tick_once()
    e.store._fire = recorder = Recorder(e.store._fire)  # type: ignore[assignment]
    clock.advance(60)
    assert await e._tick() == 1
    first = recorder.reply
    await client.add_schedule("report", "tick", "@every 1m", {"v": 2})
    assert await recorder.resend() == first
    assert await queued_args(redis, namespace) == [{"v": 1}]
    await drop_jobs(redis, namespace)


async def test_a_manual_run_replaced_at_every_read_gives_up(
    redis: Redis, namespace: str, client: Client
) -> None:
    """Bounded: a definition replaced before each of its fires is read 5 times, then the call
    raises, having enqueued nothing."""
    await client.add_schedule("report", "tick", "@every 1h", {"v": 0})
    store = client._schedule_store
    fire = store._fire
    version = iter(range(1, 100))

    async def replaced_first(keys: Any = (), args: Any = (), client_: Any = None) -> Any:
        await client.add_schedule("report", "tick", "@every 1h", {"v": next(version)})
        return await fire(keys=keys, args=args)

    store._fire = replaced_first  # type: ignore[assignment]
    with pytest.raises(ErrandsError, match="replaced 5 times"):
        await client.run_schedule_now("report")
    assert next(version) == 6
    assert await queued_args(redis, namespace) == []


async def test_a_schedule_replaced_twice_in_one_tick_is_due_at_the_next(
    redis: Redis, namespace: str, clock: FakeClock, client: Client
) -> None:
    """Replaced again while its tick read the new definition: the second conflict left it with
    no due time (the next tick came a refresh later, its slot possibly missed) and a refresh
    owed to the tick after. It is due at once, and the next tick fires the newest definition."""
    await client.add_schedule("report", "tick", "@every 1m", {"v": 0})
    e = pool(redis, namespace, clock, [], "p1")
    await e.tick_once()
    clock.advance(60)
    fire, version = e.store.fire, iter(range(1, 100))

    async def replaced_first(*args: Any, **kwargs: Any) -> Any:
        await client.add_schedule("report", "tick", "@every 1m", {"v": next(version)})
        return await fire(*args, **kwargs)

    e.store.fire = replaced_first  # type: ignore[method-assign]
    assert await e._tick() == 0  # both passes met a newer definition
    assert e._wait() == 0.001  # due again at once
    e.store.fire = fire  # type: ignore[method-assign]
    assert await e._tick() == 1
    assert await queued_args(redis, namespace) == [{"v": 2}]
    await drop_jobs(redis, namespace)
