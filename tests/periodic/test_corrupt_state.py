"""A corrupt schedule state (a `last` that is no fire time in ms, a counter that is no integer:
written by hand, a bad restore) is refused by schedule_fire.lua before its first write."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from errands import FakeClock
from errands.periodic.store import build_job, make_periodic, ms
from errands.serialization import JSONSerializer
from errands.store.keys import Keys
from tests.periodic.support import pool

pytestmark = pytest.mark.usefixtures("invariants")

# not a fire time in ms: a float, an empty field, past the year 9999 (or past what an int64
# holds), negative, leading zeros or spaces, not even UTF-8
BAD = [b"abc", b"1.5e3", b"", b"99999999999999999999", b"253402300800000", b"-5", b"007", b" 5"]
BAD.append(b"\xff")


def two(redis: Redis, namespace: str, clock: FakeClock) -> Any:
    code = [make_periodic("@every 1m", "tick", {"n": n}, name=n) for n in ("good", "bad")]
    return pool(redis, namespace, clock, code, "p1")


def errors(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


async def _fire(e: Any, mode: str, slot: float, now: float) -> tuple[str, str]:
    periodic = e.code["bad"]
    job = build_job(periodic, now, fire_time=slot)
    return await e.store.fire(  # type: ignore[no-any-return]
        periodic,
        mode,
        slot_ms=ms(slot),
        next_ms=ms(slot + 60),
        now_ms=ms(now),
        envelope=JSONSerializer().dumps(job.envelope()),
        job_id=job.id,
        pool_id="p1",
    )


@pytest.mark.parametrize("mode", ["init", "fire", "missed", "advance"])
@pytest.mark.parametrize("bad", ["abc", "1.5e3", "", "-5", "253402300800000"])
async def test_schedule_fire_refuses_a_corrupt_last_before_writing(
    redis: Redis, namespace: str, clock: FakeClock, mode: str, bad: str
) -> None:
    """tonumber('abc') is nil: the script raised a Lua error (comparing nil); '1.5e3' and '-5'
    were read as numbers and fired (the pool's next read failed again)."""
    keys = Keys(namespace)
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(keys.schedule_state("bad"), "last", bad)
    before = await redis.hgetall(keys.schedule_state("bad"))
    clock.advance(60)
    with pytest.raises(ResponseError, match=f"field last holds {bad}, not a fire time in ms"):
        await _fire(e, mode, clock.now(), clock.now())
    assert await redis.hgetall(keys.schedule_state("bad")) == before
    assert await redis.hlen(keys.jobs) == 0


@pytest.mark.parametrize("field", ["runs", "skipped", "misfires"])
@pytest.mark.parametrize("mode", ["fire", "missed", "manual"])
async def test_schedule_fire_refuses_a_corrupt_counter_before_writing(
    redis: Redis, namespace: str, clock: FakeClock, field: str, mode: str
) -> None:
    """HINCRBY of a counter that is no integer raised after the job was stored and `last`
    moved on (a half-done fire). Any corrupt counter fails the call in any mode (one rule:
    a corrupt state is refused), also where this call would not count on it."""
    keys = Keys(namespace)
    e = two(redis, namespace, clock)
    await e.tick_once()
    await redis.hset(keys.schedule_state("bad"), field, "1.5")
    before = await redis.hgetall(keys.schedule_state("bad"))
    clock.advance(60)
    with pytest.raises(ResponseError, match=f"field {field} holds 1.5, not a counter"):
        await _fire(e, mode, clock.now(), clock.now())
    assert await redis.hgetall(keys.schedule_state("bad")) == before
    assert await redis.hlen(keys.jobs) == 0
