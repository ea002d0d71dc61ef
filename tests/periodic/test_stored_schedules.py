"""Schedules stored in Redis by errands before the cron evaluator changed (croniter) keep
working: their definitions parse, and they fire from their stored state by the new rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from errands import Client, FakeClock
from errands.periodic.enqueuer import PeriodicEnqueuer
from errands.serialization import JSONSerializer
from errands.store.keys import Keys


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def old_definition(job: str, spec: str, tz: str = "UTC") -> bytes:
    """A definition byte for byte as ``PeriodicSchedule.to_json`` wrote it with croniter."""
    return (
        b'{"job":"%s","spec":"%s","tz":"%s","args":{},"misfire":"catch_up","misfire_grace":60.0,'
        b'"skip_if_running":false,"priority":0}' % (job.encode(), spec.encode(), tz.encode())
    )


async def fired(redis: Redis, keys: Keys, job: str) -> list[Any]:
    ids = await redis.zrange(keys.queue(job), 0, -1)
    envelopes = await redis.hmget(keys.jobs, ids) if ids else []
    return sorted(orjson.loads(e)["m"]["fire_time"] for e in envelopes)


async def test_schedules_stored_the_old_way_fire_by_the_new_rules(
    redis: Redis, redis_url: str, namespace: str
) -> None:
    keys = Keys(namespace)
    stored = {
        # croniter fired this every hour: its state says the 10:00 run was the last one
        "nine": ("0 9-9 * * *", "UTC", utc(2026, 1, 1, 10)),
        # forms croniter accepted beyond Vixie cron: last day of month, wrap-around range,
        # croniter's 'L5' (last Friday), N/S steps
        "month_end": ("0 0 0 L * *", "UTC", utc(2026, 1, 1)),
        "weekend": ("0 0 12 * * FRI-MON", "UTC", utc(2026, 1, 1)),
        "last_friday": ("0 0 6 * * L5", "UTC", utc(2026, 1, 1)),
        "from_five": ("0 5/20 * * * *", "UTC", utc(2026, 1, 1)),
    }
    for name, (spec, tz, last) in stored.items():
        await store_the_old_way(redis, keys, name, spec, tz, last)

    async with Client.from_url(redis_url, namespace=namespace) as client:
        infos = {i.name: i for i in await client.schedules()}
    assert sorted(infos) == sorted(stored)
    assert infos["nine"].spec == "0 9-9 * * *" and infos["nine"].runs == 3

    clock = FakeClock(utc(2026, 1, 1, 10, 30))
    periodic = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), pool_id="new")
    await periodic.tick_once()
    for _ in range(4 * 24 * 31):  # the rest of January 2026 in 15-minute steps
        clock.advance(900)
        await periodic.tick_once()

    nine = [utc(2026, 1, d, 9) for d in range(2, 32)] + [utc(2026, 2, 1, 9)]
    assert await fired(redis, keys, "nine") == nine
    assert await fired(redis, keys, "month_end") == [utc(2026, 1, 31)]
    weekend = [d for d in range(2, 32) if datetime(2026, 1, d).weekday() in (4, 5, 6, 0)]
    assert await fired(redis, keys, "weekend") == [utc(2026, 1, d, 12) for d in weekend]
    assert await fired(redis, keys, "last_friday") == [utc(2026, 1, 30, 6)]
    five = await fired(redis, keys, "from_five")
    assert five[:3] == [utc(2026, 1, 1, 10, 25), utc(2026, 1, 1, 10, 45), utc(2026, 1, 1, 11, 5)]
    assert len(five) == 31 * 72 + 1  # 10:25 on Jan 1 (the catch-up) .. 10:25 on Feb 1


async def test_a_stored_wildcard_schedule_skips_the_spring_forward_gap(
    redis: Redis, namespace: str
) -> None:
    """croniter's errands ran '10 * * * *' in Berlin at 03:00 CEST for the skipped 02:10 and
    again at 03:10: from the state it left at 01:10 CET, the next run is 03:10 CEST."""
    keys = Keys(namespace)
    await store_the_old_way(
        redis, keys, "berlin", "10 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 10)
    )
    clock = FakeClock(utc(2026, 3, 29, 1, 0, 30))  # 03:00:30 CEST
    periodic = PeriodicEnqueuer(redis, keys, clock, JSONSerializer(), pool_id="new")
    assert await periodic.tick_once() == 0
    clock.advance(600)  # 03:10:30 CEST
    assert await periodic.tick_once() == 1
    assert await fired(redis, keys, "berlin") == [utc(2026, 3, 29, 1, 10)]


async def store_the_old_way(
    redis: Redis, keys: Keys, name: str, spec: str, tz: str, last: float
) -> None:
    """A runtime definition and the state hash as schedule_fire.lua left them after a run."""
    await redis.hset(keys.schedules, name, old_definition(name, spec, tz))
    state = {"last": round(last * 1000), "next": 0, "runs": 3, "job": "old-job-id"}
    await redis.hset(keys.schedule_state(name), mapping=state)  # type: ignore[arg-type]
